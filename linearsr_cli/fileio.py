"""Atomic file writes: the one temp-file + fsync + rename used across the project, and the batch's
temp names (.NAME.HOST-PID.linearsr-tmp) that tell which process writes a file.

Raises OSError; callers turn it into their own project error with the path in the message.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path


def write_atomic(path: Path, data: bytes, *, tmp: Path | None = None) -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one, never a part:
    a temp file in the same folder (default: hidden `.NAME.tmp`), fsync, os.replace."""
    tmp = tmp or path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


TEMP_TAG = ".linearsr-tmp"


def host_name() -> str:
    return socket.gethostname().replace(".", "_").replace("/", "_") or "host"


def temp_path(path: Path) -> Path:
    """.NAME.HOST-PID.linearsr-tmp: hidden, and telling which process (on a shared filesystem,
    which machine too) is writing it."""
    return path.with_name(f".{path.name}.{host_name()}-{os.getpid()}{TEMP_TAG}")


def remove_stale_temps(path: Path) -> None:
    """Delete temp files a killed run on this machine left for `path` (their process no longer
    exists). Other machines' temp files are left alone: hidden, never mistaken for outputs."""
    for tmp in path.parent.glob(f".{path.name}.*{TEMP_TAG}"):
        owner = tmp.name[len(path.name) + 2 : -len(TEMP_TAG)]
        host, _, pid = owner.rpartition("-")
        if host in ("", host_name()) and pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

