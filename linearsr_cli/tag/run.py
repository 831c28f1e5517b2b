"""`linearsr tag`: resolve the tags of many images, optionally writing editable sidecars.

Each image yields one TagRecord; an image that cannot be read (or whose sidecar is bad) gives a
record with `error` set and the batch goes on.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from linearsr_cli.errors import ConfigError, ImageReadError, TagError
from linearsr_cli.tag.guidance import ResolvedTags, TagGuidance
from linearsr_cli.tag.sources import sidecar_path, write_sidecar


@dataclass(frozen=True)
class TagRecord:
    """What `linearsr tag` found for one image. sidecar: "written", "kept" (exists) or ""."""

    path: Path
    resolved: ResolvedTags | None = None
    sidecar: str = ""
    error: str | None = None

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"path": str(self.path)}
        if self.error is not None:
            out["error"] = self.error
            return out
        assert self.resolved is not None
        out.update(self.resolved.to_dict())
        if self.sidecar:
            out["sidecar"] = self.sidecar
            out["sidecar_path"] = str(sidecar_path(self.path))
        return out


def collect_images(source: str, stdin_lines: Iterable[str] | None = None) -> list[Path]:
    """A file -> [file]; a folder -> its images, recursive and sorted; "-" -> the paths listed
    in `stdin_lines` (blank lines and `#` comments skipped). ConfigError if IN does not exist."""
    from linearsr_cli.imageio import READABLE_SUFFIXES

    if source == "-":
        lines = (line.strip() for line in (stdin_lines or ()))
        return [Path(line) for line in lines if line and not line.startswith("#")]
    root = Path(source)
    if root.is_file():
        return [root]
    if root.is_dir():
        return sorted(
            p
            for p in root.rglob("*")
            if p.is_file() and p.suffix.lower() in READABLE_SUFFIXES and not p.name.startswith(".")
        )
    raise ConfigError(f"{source}: no such file or folder")


def tag_one(
    path: Path, guidance: TagGuidance, *, write: bool, overwrite: bool, fresh: bool
) -> TagRecord:
    """Resolve (and maybe write a sidecar for) one image. An unreadable image or sidecar becomes
    the record's `error`; a tagger that cannot load raises TagError (a setup error)."""
    from linearsr_cli.imageio import read_image

    try:
        rgb = read_image(path).rgb  # (3, h, w) in [0, 1]
        found = None if fresh else guidance.resolve_without_tagger(path)
    except (ImageReadError, TagError) as exc:
        return TagRecord(path, error=str(exc))
    resolved = found if found is not None else guidance.auto_tags(rgb)
    sidecar = ""
    if write:
        try:
            written = write_sidecar(path, resolved.tags, overwrite=overwrite)
        except TagError as exc:
            return TagRecord(path, resolved, error=str(exc))
        sidecar = "written" if written else "kept"
    return TagRecord(path, resolved, sidecar)


def table_row(record: TagRecord) -> tuple[str, str, str, str]:
    """(path, source, tags with scores, sidecar) for the human-readable table."""
    if record.error is not None or record.resolved is None:
        return (str(record.path), "error", record.error or "", "")
    res = record.resolved
    if res.scores:
        tags = ", ".join(f"{t} ({p:.2f})" for t, p in zip(res.tags, res.scores, strict=True))
    else:
        tags = ", ".join(res.tags)
    return (str(record.path), res.source, tags or "(none: null token)", record.sidecar)


def tag_images(
    paths: Iterable[Path],
    guidance: TagGuidance,
    *,
    write_sidecars: bool = False,
    overwrite: bool = False,
    fresh: bool = False,
) -> Iterator[TagRecord]:
    """One TagRecord per path, in order; the tagger/encoder are loaded once, on first need."""
    for path in paths:
        yield tag_one(path, guidance, write=write_sidecars, overwrite=overwrite, fresh=fresh)
