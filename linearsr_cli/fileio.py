"""Atomic file writes: the one temp-file + fsync + rename used across the project.

Raises OSError; callers turn it into their own project error with the path in the message.
"""

from __future__ import annotations

import contextlib
import os
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
