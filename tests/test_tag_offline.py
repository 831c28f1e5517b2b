"""Tagging works with no network and empty model caches: nothing is fetched, ever.

Each test runs a fresh interpreter (so no module is already imported) with HF_HOME, TORCH_HOME,
XDG_CACHE_HOME and the hub caches pointed at empty temporary folders, and the HF offline
variables removed from the environment (our loader must set them itself).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, socket, sys
attempts = []
if "--guard" in sys.argv:
    real_connect = socket.socket.connect
    def refuse(self, address):
        attempts.append(str(address))
        raise OSError("network disabled by test")
    socket.socket.connect = refuse
    socket.socket.connect_ex = lambda self, address: attempts.append(str(address)) or 111
try:
    socket.create_connection(("1.1.1.1", 443), timeout=2).close()
    net = "up"
except OSError:
    net = "down"
attempts.clear()
import skimage.data, torch
from linearsr_cli.tag.guidance import TagConfig, TagGuidance
img = torch.from_numpy(skimage.data.chelsea()).permute(2, 0, 1).float() / 255.0
g = TagGuidance(TagConfig(), torch.device("cpu"))
res = g.resolve(None, img)
states, mask = g.encode(res.tags)
print(json.dumps({"net": net, "tags": list(res.tags), "source": res.source,
                  "shape": list(states.shape), "attempts": attempts}))
"""


def empty_cache_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    for name in ("HF_HOME", "TORCH_HOME", "XDG_CACHE_HOME", "HF_HUB_CACHE", "SENTENCE_TRANSFORMERS_HOME"):
        (tmp / name).mkdir()
        env[name] = str(tmp / name)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_tagging(prefix: list[str], tmp: Path, *args: str) -> dict:
    env = empty_cache_env(tmp)
    proc = subprocess.run(
        [*prefix, sys.executable, "-c", SCRIPT, *args],
        cwd=tmp, env=env, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["source"] == "tagger"
    assert any("cat" in tag for tag in out["tags"]), out
    assert out["shape"][0] == 1 and out["shape"][2] == 384
    for name in ("HF_HOME", "TORCH_HOME", "HF_HUB_CACHE"):  # nothing was fetched into them
        assert not any((tmp / name).rglob("*.safetensors")) and not any((tmp / name).rglob("*.pth"))
    return out


def network_namespace_available() -> str | None:
    """None if `unshare -n` works here, else the reason it does not."""
    if shutil.which("unshare") is None:
        return "unshare(1) is not installed"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"unshare -n not permitted here: {probe.stderr.strip() or probe.returncode}"
    return None


def test_tagging_with_network_namespace_cut(tmp_path: Path) -> None:
    reason = network_namespace_available()
    if reason:
        pytest.skip(reason)
    out = run_tagging(["unshare", "-n"], tmp_path, "--guard")
    assert out["net"] == "down"  # the namespace really has no network
    assert out["attempts"] == []  # and nothing even tried to connect


def test_tagging_makes_no_connection_attempt(tmp_path: Path) -> None:
    """The fallback where network namespaces are not available: a socket guard only."""
    if network_namespace_available() is None:
        pytest.skip("covered by test_tagging_with_network_namespace_cut (guard + namespace)")
    out = run_tagging([], tmp_path, "--guard")
    assert out["attempts"] == []  # no socket connect at all while loading and tagging
