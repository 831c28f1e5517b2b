"""What the CLI prints for people and for grep: every error is one line whatever its length
(stderr a pipe or a file, as in cron and CI, where rich and click once wrapped at 80 columns), and
help at 80 columns shows every default whole. `.ci/run` runs the suite under a long TMPDIR with
COLUMNS unset, so every test with a temporary path checks the same class of bug."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from linearsr_cli.cli import EXIT_USAGE, app
from tests.test_batch_pipelines import folder

REPO = Path(__file__).resolve().parents[1]
PLAIN = ("error: ", "Usage: ", "Try '")  # the only lines a failed setup writes to stderr


@pytest.fixture()
def long_dir(tmp_path: Path) -> Path:
    """A folder whose path is at least 200 characters long."""
    path = tmp_path / ("d" * 100) / ("e" * max(1, 200 - len(str(tmp_path)) - 102))
    path.mkdir(parents=True)
    assert len(str(path)) >= 200
    return path


def _error_line(stderr: str) -> str:
    """The one `error:` line of a failed run; every other line is usage or the --help hint."""
    lines = stderr.splitlines()
    assert lines and all(line.startswith(PLAIN) for line in lines), stderr
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    return errors[0]


def test_every_setup_error_is_one_line_holding_the_whole_path(long_dir: Path, tiny_weights: Path) -> None:
    weights = long_dir / "tiny-x4.safetensors"
    shutil.copy(tiny_weights, weights)
    src = folder(long_dir / "in", n=1)
    (long_dir / "empty").mkdir()
    taken = long_dir / "taken"
    taken.write_text("a file, not a folder")
    (long_dir / "bad.safetensors").write_bytes(b"not weights")
    out = long_dir / "out"
    cases = [  # (args, the path the message names, words it holds)
        ([str(src), str(taken)], taken, "is a file"),
        ([str(src), str(taken / "sub")], taken / "sub", "cannot create OUT"),
        ([str(src), str(Path("/proc/self") / ("o" * 200))], Path("/proc/self") / ("o" * 200), "cannot create OUT"),  # root too
        ([str(long_dir / "empty"), str(out)], long_dir / "empty", "no input found"),
        ([str(long_dir / "missing"), str(out)], long_dir / "missing", "no such file or folder"),
        ([str(src), str(out), "--scale", "2"], weights, "--scale 2"),
        ([str(src / "p0.png"), str(long_dir / "x.png"), "--format", "jpg"], long_dir / "x.png", "--format jpg"),
        ([str(src), str(out), "--weights", str(long_dir / "missing.safetensors")], long_dir / "missing.safetensors", "does not exist"),
        ([str(src), str(out), "--weights", str(long_dir / "bad.safetensors")], long_dir / "bad.safetensors", "safetensors"),
        ([str(src), str(out), "--log", str(long_dir / "no" / "run.log")], long_dir / "no" / "run.log", "cannot open --log"),
    ]
    for args, path, words in cases:
        if "--weights" not in args:
            args = [*args, "--weights", str(weights)]
        res = CliRunner().invoke(app, ["upscale", *args, "--tags", "off"])
        assert res.exit_code == EXIT_USAGE, (args, res.output)
        line = _error_line(res.stderr)
        assert str(path) in line and words in line, (args, line)
        assert not out.exists(), args  # nothing is made for a run that cannot start
    if os.geteuid() != 0:  # root writes into read-only folders
        ro = long_dir / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        res = CliRunner().invoke(app, ["upscale", str(src), str(ro / "out"), "--weights", str(weights)])
        assert str(ro / "out") in _error_line(res.stderr)


def test_errors_without_a_path_and_usage_errors_are_one_line_too(long_dir: Path, tiny_weights: Path) -> None:
    src = folder(long_dir / "in", n=1)
    out = long_dir / "out"
    cases = [  # (args, words the one error line holds)
        (["--scale", "3"], "no x3 LinearSR model is shipped"),
        (["--format", "gif", "--weights", str(tiny_weights)], "got 'gif'"),
        (["--device", "cuda:7", "--weights", str(tiny_weights)], "cuda:7"),
        (["--dtype", "fp8", "--weights", str(tiny_weights)], "unknown dtype 'fp8'"),
        (["--scale", "abc"], "'--scale'"),  # click's own usage errors
        (["--sclae", "2"], "No such option: --sclae"),
    ]
    for args, words in cases:
        res = CliRunner().invoke(app, ["upscale", str(src), str(out), *args])
        assert res.exit_code == EXIT_USAGE, (args, res.output)
        assert words in _error_line(res.stderr), (args, res.stderr)
        assert not out.exists(), args
    res = CliRunner().invoke(app, ["select-knee", str(long_dir), "--json", str(long_dir / "knee.json")])
    assert res.exit_code == EXIT_USAGE and f"--json-out {long_dir / 'knee.json'}" in _error_line(res.stderr)


def test_error_lines_in_a_real_pipe_with_no_columns(long_dir: Path) -> None:
    """A real process whose stderr is a pipe and whose environment has no COLUMNS (cron, CI)."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["PYTHONPATH"] = str(REPO)
    for args, words in [([str(long_dir / "missing"), str(long_dir / "out")], f"{long_dir / 'missing'}: no such file"),
                        ([str(long_dir), str(long_dir / "out"), "--scale", "abc"], "Invalid value for '--scale'")]:
        proc = subprocess.run([sys.executable, "-m", "linearsr_cli", "upscale", *args], capture_output=True, text=True,
                              env=env, timeout=120)
        assert proc.returncode == EXIT_USAGE, proc.stderr
        assert words in _error_line(proc.stderr)


# ----------------------------------------------------------------------------- help


def _commands(group, path=()):  # type: ignore[no-untyped-def]
    """(argv path, command) of every command under `group`, sub-groups included."""
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name), command


def _flat(text: str) -> str:
    """Help text with the table borders gone and whitespace made single spaces."""
    return " ".join(text.replace("│", " ").replace("╭", " ").replace("╰", " ").split())


def test_help_at_80_columns_shows_every_default_whole() -> None:
    from typer.main import get_command

    for path, _ in _commands(get_command(app)):
        wide = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "400"}).stdout
        narrow = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80"}).stdout
        assert max(len(line) for line in narrow.splitlines()) <= 80
        defaults = re.findall(r"\[default: [^\]]*\]", wide)
        for default in defaults:
            assert default in _flat(narrow), (path, default)
        # nothing is cut, except the flag pair --train-structure-expert/--bare-structure-expert
        # of `train recipe`'s ablation panel: typer's table crops long option names
        assert all("structure-e…" in line for line in narrow.splitlines() if "…" in line), path


def test_readme_spells_options_as_the_cli_does() -> None:
    readme = (REPO / "README.md").read_text()
    assert "eval --tag-kind visual" in readme
    assert not re.search(r"eval --tags [^`]*visual", readme)  # the ablation's token is --tag-kind visual


def test_format_help_names_every_writable_format() -> None:
    from linearsr_cli.imageio import FORMATS

    shown = _flat(CliRunner().invoke(app, ["upscale", "--help"], env={"COLUMNS": "400"}).stdout)
    help_text = shown[shown.index("--format") : shown.index("--quality")]
    assert all(re.search(rf"\b{fmt}\b", help_text) for fmt in ("keep", *FORMATS)), help_text
