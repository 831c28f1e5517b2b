"""Keywords a photo pipeline already stored in the file: XMP dc:subject and IPTC 2:25.

Reads headers only (PIL's lazy open; pixels are never decoded). Metadata is best effort: a
missing, malformed or hostile packet yields no keywords rather than an error, since the image
itself may be fine. XMP is parsed with the standard library after refusing DTDs and entities
(no entity expansion, no external references), and only up to MAX_XMP_BYTES.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from PIL import Image, IptcImagePlugin, UnidentifiedImageError

MAX_XMP_BYTES = 1 << 20
NS_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
NS_DC = "http://purl.org/dc/elements/1.1/"
IPTC_KEYWORDS = (2, 25)
IPTC_CHARSET = (1, 90)
_UTF8_ESCAPE = b"\x1b%G"
_XMP_BODY = re.compile(rb"<x:xmpmeta\b.*?</x:xmpmeta>|<rdf:RDF\b.*?</rdf:RDF>", re.S)


def xmp_subjects(packet: bytes | str) -> list[str]:
    """The rdf:li items of dc:subject in an XMP packet; [] when absent or unparsable."""
    data = packet.encode("utf-8") if isinstance(packet, str) else bytes(packet)
    data = data[:MAX_XMP_BYTES]
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        return []
    match = _XMP_BODY.search(data)
    if match is None:
        return []
    try:
        root = ET.fromstring(match.group(0))
    except ET.ParseError:
        return []
    out: list[str] = []
    for subject in root.iter(f"{{{NS_DC}}}subject"):
        for item in subject.iter(f"{{{NS_RDF}}}li"):
            if item.text and item.text.strip():
                out.append(item.text.strip())
    return out


def _decode_iptc(value: bytes, utf8: bool) -> str:
    if utf8:
        return value.decode("utf-8", errors="replace")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def iptc_keywords(im: Image.Image) -> list[str]:
    """IPTC-IIM 2:25 Keywords (JPEG APP13 / TIFF); UTF-8 when 1:90 says so or decodes cleanly."""
    try:
        info = IptcImagePlugin.getiptcinfo(im)
    except Exception:  # noqa: BLE001 - malformed IPTC blocks raise assorted errors inside PIL
        return []
    if not info:
        return []
    raw = info.get(IPTC_KEYWORDS)
    if raw is None:
        return []
    values = raw if isinstance(raw, list) else [raw]
    utf8 = info.get(IPTC_CHARSET) == _UTF8_ESCAPE
    return [_decode_iptc(v, utf8).strip() for v in values if isinstance(v, bytes)]


def _xmp_packet(im: Image.Image) -> bytes | str | None:
    for key in ("xmp", "XML:com.adobe.xmp"):
        value = im.info.get(key)
        if value:
            return value
    tags = getattr(im, "tag_v2", None)  # TIFF: tag 700 holds XMP
    if tags is not None and 700 in tags:
        return tags[700]
    return None


def read_keywords(path: Path) -> list[str]:
    """XMP dc:subject keywords, then IPTC keywords not already present; [] when none."""
    try:
        with Image.open(path) as im:
            packet = _xmp_packet(im)
            found = xmp_subjects(packet) if packet else []
            found += iptc_keywords(im)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
        return []
    return found
