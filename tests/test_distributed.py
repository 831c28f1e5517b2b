"""Scale-out: --shard partitions, the Ray batch gives the local run's bytes and resumes after an
interrupt, and DDP training (two gloo processes) matches one process on the same global batch.
Ray tests need the [ray] extra (CI installs it); `-m "not ray"` skips them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from linearsr_cli.cli import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, app
from linearsr_cli.engine.plan import Job, parse_shard, shard_jobs
from linearsr_cli.errors import ConfigError
from tests.conftest import synthetic_photo

REPO = Path(__file__).resolve().parents[1]
ray_installed = pytest.mark.skipif(
    __import__("importlib").util.find_spec("ray") is None, reason="Ray is not installed (pip install -e '.[ray]')"
)


def photos(root: Path, n: int, size: tuple[int, int] = (24, 20)) -> Path:
    for i in range(n):
        sub = root / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray((synthetic_photo(*size, seed=i) * 255).astype(np.uint8)).save(sub / f"p{i}.png")
    return root


def upscale(args: list[str], weights: Path):
    # --dtype fp32: "auto" times a bf16 matmul in each process, and on a loaded CPU the driver and
    # the actors can decide differently (engine.device.cpu_bf16), which is not what these test
    return CliRunner().invoke(app, ["upscale", *args, "--weights", str(weights), "--tags", "off", "--json",
                                    "--dtype", "fp32"])


def outputs(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_shards_partition_the_jobs_stably(tmp_path: Path) -> None:
    out = tmp_path / "out"
    jobs = [Job(Path(f"in/{i}.png"), out / f"d{i % 3}" / f"{i}.png", "png") for i in range(50)]
    parts = [shard_jobs(jobs, out, (k, 3)) for k in range(3)]
    assert sorted(j.output for p in parts for j in p) == sorted(j.output for j in jobs)
    assert all(parts) and sum(map(len, parts)) == 50
    fewer = shard_jobs(jobs[::2], out, (1, 3))  # a file keeps its shard when others go away
    assert {j.output for j in fewer} <= {j.output for j in parts[1]}
    assert parse_shard("2/3") == (2, 3)
    for bad in ("3/3", "-1/2", "1", "a/b"):
        with pytest.raises(ConfigError):
            parse_shard(bad)


def test_shard_runs_cover_every_file_once(tmp_path: Path, tiny_weights: Path) -> None:
    src = photos(tmp_path / "in", 7)
    seen: dict[int, list[str]] = {}
    for k in range(3):
        res = upscale([str(src), str(tmp_path / "out"), "--shard", f"{k}/3"], tiny_weights)
        assert res.exit_code == EXIT_OK, res.output
        seen[k] = [json.loads(x)["output"] for x in res.stdout.splitlines() if x.startswith("{")]
    flat = [o for outs in seen.values() for o in outs]
    assert len(flat) == 7 == len(set(flat)) == len(list((tmp_path / "out").rglob("*.png")))
    k = max(seen, key=lambda i: len(seen[i]))  # a rerun of shard k redoes nothing that is done
    res = upscale([str(src), str(tmp_path / "out"), "--shard", f"{k}/3"], tiny_weights)
    assert [json.loads(x)["status"] for x in res.stdout.splitlines() if x.startswith("{")] == ["skipped"] * len(seen[k])


def test_ray_option_without_ray_is_a_setup_error(tmp_path: Path, tiny_weights: Path, monkeypatch) -> None:
    import linearsr_cli.engine.ray as dist

    monkeypatch.setattr(dist, "ray_available", lambda: False)
    src = photos(tmp_path / "in", 1)
    res = upscale([str(src), str(tmp_path / "out"), "--ray", "local"], tiny_weights)
    assert res.exit_code == EXIT_USAGE and "pip install" in res.output and not (tmp_path / "out").exists()


def test_local_path_does_not_import_ray(tmp_path: Path, tiny_weights: Path) -> None:
    src = photos(tmp_path / "in", 1)
    code = (
        "import sys; from linearsr_cli.cli import app; from typer.testing import CliRunner; "
        f"r = CliRunner().invoke(app, ['upscale', {str(src)!r}, {str(tmp_path / 'o')!r}, '--weights', "
        f"{str(tiny_weights)!r}, '--tags', 'off', '-q']); assert r.exit_code == 0, r.output; "
        "assert 'ray' not in sys.modules, 'ray imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray cluster (`ray start --head`) for the module, as a user would run one; the
    tests connect with --ray auto through RAY_ADDRESS."""
    ray = pytest.importorskip("ray")
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ray_bin = str(Path(sys.executable).with_name("ray"))
    saved = {k: os.environ.get(k) for k in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    os.environ["RAY_AUTH_MODE"] = "disabled"  # a loopback test cluster; Ray >= 2.59 defaults to tokens
    subprocess.run([ray_bin, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                    "--disable-usage-stats"], check=True, capture_output=True, timeout=300)
    address = f"127.0.0.1:{port}"
    os.environ["RAY_ADDRESS"] = address
    try:
        yield address
    finally:
        ray.shutdown()
        subprocess.run([ray_bin, "stop", "--force"], capture_output=True, timeout=120)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.mark.ray
@ray_installed
def test_ray_batch_gives_the_local_bytes(tmp_path: Path, tiny_weights: Path, ray_cluster) -> None:
    src = photos(tmp_path / "in", 4)
    local = upscale([str(src), str(tmp_path / "local")], tiny_weights)
    assert local.exit_code == EXIT_OK, local.output
    res = upscale([str(src), str(tmp_path / "ray"), "--ray", "auto", "--ray-actors", "2", "--ray-cpus", "1"], tiny_weights)
    assert res.exit_code == EXIT_OK, res.output
    recs = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
    assert sorted(r["status"] for r in recs) == ["ok"] * 4
    assert {r["input"] for r in recs} == {str(p) for p in src.rglob("*.png")}  # named as the driver named them
    assert outputs(tmp_path / "ray") == outputs(tmp_path / "local")
    again = upscale([str(src), str(tmp_path / "ray"), "--ray", "auto"], tiny_weights)
    assert [json.loads(x)["status"] for x in again.stdout.splitlines() if x.startswith("{")] == ["skipped"] * 4


@pytest.mark.ray
@ray_installed
def test_interrupted_ray_run_resumes_without_partial_files(tmp_path: Path, tiny_weights: Path, ray_cluster) -> None:
    """Ctrl-C a Ray run after the first output: exit 130, finished outputs kept, no visible
    partial file; the rerun finishes the rest and leaves no temp file."""
    src = photos(tmp_path / "in", 6, size=(48, 40))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "linearsr_cli", "upscale", str(src), str(out), "--weights", str(tiny_weights),
           "--tags", "off", "--json", "--ray", "auto", "--ray-actors", "1", "--ray-cpus", "1"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not list(out.rglob("*.png")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (EXIT_INTERRUPTED, EXIT_OK), err
    done = [p for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")]
    for p in done:
        Image.open(p).verify()  # every visible output is whole
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == EXIT_OK, res.stderr
    statuses = [json.loads(x)["status"] for x in res.stdout.splitlines() if x.startswith("{")]
    assert statuses.count("skipped") >= len(done) and len(statuses) == 6
    assert len([p for p in out.rglob("*.png") if not p.name.startswith(".")]) == 6
    assert not [p for p in out.rglob(".*") if p.is_file()]  # no temp file left behind


@pytest.mark.slow
def test_ddp_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    """torchrun with 2 CPU processes (gloo) trains a tiny config; rank 0 alone writes the
    checkpoint and the resume state; the logged loss (the global batch's mean) equals one
    process on the same global batch to within 1e-4 relative."""
    from tests.test_train import write_photos

    data = write_photos(tmp_path / "photos")
    common = ["train", "stage1", "--data", str(data), "--steps", "3", "--crop", "32", "--ckpt-every", "3",
              "--dim", "32", "--depth", "1", "--heads", "2", "--stem-blocks", "0", "--precision", "fp32",
              "--val-count", "1", "--val-size", "32", "--no-tags", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # a port free now: a fixed one can be held by a process of the Ray tests that ran before
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ddp = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           "-m", "linearsr_cli", *common, "--batch", "2", "--out", str(tmp_path / "ddp")]
    one = [sys.executable, "-m", "linearsr_cli", *common, "--batch", "4", "--out", str(tmp_path / "one")]
    for cmd in (ddp, one):
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-4000:]
    read = lambda run: [json.loads(x)["loss"] for x in (tmp_path / run / "train_log.jsonl").read_text().splitlines()]  # noqa: E731
    assert read("ddp") == pytest.approx(read("one"), rel=1e-4)
    files = sorted(p.name for p in (tmp_path / "ddp").iterdir())
    assert files.count("ckpt-0000003.safetensors") == 1 and "ckpt-0000003.state.json" in files
    state = json.loads((tmp_path / "ddp" / "ckpt-0000003.state.json").read_text())
    assert state["step"] == 3 and state["train_config"]["batch_size"] == 2
