"""Where tags come from besides the tagger: --tags text, sidecar files, file metadata.

Sidecar format (documented in the README): next to `photo.jpg` the file `photo.jpg.tags`
(the image's full name plus `.tags`, so photo.jpg and photo.png keep separate sidecars).
UTF-8 (a BOM is accepted), tags separated by commas and/or newlines, lines starting with `#`
are comments. An existing but empty sidecar means "this image has no tags": guidance falls back
to the null token and the tagger is not run. A sidecar that is not valid UTF-8, or is larger
than MAX_SIDECAR_BYTES, is an error (TagError) naming the file, never silently ignored: the
user wrote it on purpose and would otherwise get tags they did not ask for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from linearsr_cli.errors import TagError
from linearsr_cli.fileio import write_atomic

SIDECAR_SUFFIX = ".tags"
MAX_SIDECAR_BYTES = 64 * 1024
MAX_TAG_CHARS = 64
_SPACES = re.compile(r"\s+")
_SPLIT = re.compile(r"[,\n;]")


def normalize_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """Strip, collapse inner whitespace, cap length, drop empties and case-insensitive repeats."""
    out: list[str] = []
    seen: set[str] = set()
    for raw in tags:
        tag = _SPACES.sub(" ", str(raw)).strip()[:MAX_TAG_CHARS].strip()
        key = tag.casefold()
        if tag and key not in seen:
            seen.add(key)
            out.append(tag)
    return tuple(out)


def parse_tag_text(text: str) -> tuple[str, ...]:
    """Tags from free text: comma/semicolon/newline separated, `#` comment lines skipped."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")
    lines = [line for line in text.split("\n") if not line.lstrip().startswith("#")]
    return normalize_tags(_SPLIT.split("\n".join(lines)))


def sidecar_path(image: Path) -> Path:
    """`photo.jpg` -> `photo.jpg.tags`."""
    return image.with_name(image.name + SIDECAR_SUFFIX)


def read_sidecar(image: Path) -> tuple[str, ...] | None:
    """The sidecar's tags, () for an empty sidecar, None when there is none; TagError if bad."""
    side = sidecar_path(image)
    if not side.is_file():
        return None
    try:
        size = side.stat().st_size
        if size > MAX_SIDECAR_BYTES:
            raise TagError(f"{side}: sidecar is {size} bytes, more than {MAX_SIDECAR_BYTES}")
        raw = side.read_bytes()
    except OSError as exc:
        raise TagError(f"{side}: cannot read sidecar: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TagError(
            f"{side}: sidecar is not UTF-8 (bad byte 0x{raw[exc.start]:02x} at offset "
            f"{exc.start}); re-save it as UTF-8"
        ) from None
    return parse_tag_text(text)


def write_sidecar(image: Path, tags: Iterable[str], *, overwrite: bool = False) -> Path | None:
    """Write `tags` one per line to the image's sidecar atomically; None (nothing written) when
    a sidecar exists and `overwrite` is False."""
    side = sidecar_path(image)
    if side.exists() and not overwrite:
        return None
    body = "".join(f"{tag}\n" for tag in normalize_tags(tags))
    try:
        write_atomic(side, body.encode("utf-8"))
    except OSError as exc:
        raise TagError(f"{side}: cannot write sidecar: {exc.strerror or exc}") from None
    return side


def read_metadata_tags(image: Path) -> tuple[str, ...]:
    """Keywords stored in the file itself (XMP dc:subject, IPTC 2:25); () when none."""
    from linearsr_cli.tag.metadata import read_keywords

    return normalize_tags(read_keywords(image))
