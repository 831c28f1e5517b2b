"""Tag sources without any network model: sidecars, XMP/IPTC keywords, precedence, the label
table, the training cache's key and dropout, and input collection for `linearsr tag`."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from linearsr_cli.errors import ConfigError, TagError
from linearsr_cli.tag.guidance import ResolvedTags, TagConfig, TagGuidance
from linearsr_cli.tag.labels import IMAGENET_LABELS
from linearsr_cli.tag.metadata import read_keywords, xmp_subjects
from linearsr_cli.tag.run import collect_images
from linearsr_cli.tag.sources import (
    normalize_tags,
    parse_tag_text,
    read_sidecar,
    sidecar_path,
    write_sidecar,
)


def xmp_packet(subjects: list[str]) -> str:
    items = "".join(f"<rdf:li>{s}</rdf:li>" for s in subjects)
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        f"<dc:subject><rdf:Bag>{items}</rdf:Bag></dc:subject>"
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
        '<?xpacket end="w"?>'
    )


def iptc_app13(keywords: list[str], utf8: bool = True) -> bytes:
    """A JPEG APP13 segment: Photoshop 3.0 resource 0x0404 holding IPTC-IIM records."""
    iim = b""
    if utf8:
        iim += b"\x1c\x01\x5a" + struct.pack(">H", 3) + b"\x1b%G"  # 1:90 coded charset = UTF-8
    for kw in keywords:
        data = kw.encode("utf-8" if utf8 else "latin-1")
        iim += b"\x1c\x02\x19" + struct.pack(">H", len(data)) + data  # 2:25 keyword
    if len(iim) % 2:
        iim += b"\x00"
    resource = b"8BIM" + struct.pack(">H", 0x0404) + b"\x00\x00" + struct.pack(">I", len(iim)) + iim
    payload = b"Photoshop 3.0\x00" + resource
    return b"\xff\xed" + struct.pack(">H", len(payload) + 2) + payload


def small_rgb(seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))


def write_jpeg_with_iptc(path: Path, keywords: list[str], utf8: bool = True) -> None:
    buf = io.BytesIO()
    small_rgb().save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    path.write_bytes(data[:2] + iptc_app13(keywords, utf8) + data[2:])  # right after SOI


def guidance(cfg: TagConfig | None = None) -> TagGuidance:
    return TagGuidance(cfg or TagConfig(), torch.device("cpu"))


# --- text and sidecars -------------------------------------------------------------------


def test_normalize_and_parse_tags() -> None:
    assert normalize_tags(["  cat ", "Cat", "", "big   dog", "x" * 100]) == ("cat", "big dog", "x" * 64)
    text = "\ufeff# my tags\ncat, grass\r\n\nred  car;sky\n  # not this\n"
    assert parse_tag_text(text) == ("cat", "grass", "red car", "sky")


def test_sidecar_round_trip_and_no_clobber(tmp_path: Path) -> None:
    img = tmp_path / "photo.jpg"
    img.write_bytes(b"")
    assert sidecar_path(img) == tmp_path / "photo.jpg.tags"
    assert read_sidecar(img) is None
    assert write_sidecar(img, ["cat", "sofa"]) == sidecar_path(img)
    assert read_sidecar(img) == ("cat", "sofa")
    assert write_sidecar(img, ["dog"]) is None  # exists: left alone
    assert read_sidecar(img) == ("cat", "sofa")
    assert write_sidecar(img, ["dog"], overwrite=True) is not None
    assert read_sidecar(img) == ("dog",)


def test_empty_sidecar_means_no_tags(tmp_path: Path) -> None:
    img = tmp_path / "a.png"
    sidecar_path(img).write_text("# nothing here\n", encoding="utf-8")
    assert read_sidecar(img) == ()
    res = guidance().resolve(img, torch.rand(3, 8, 8))
    assert res == ResolvedTags((), "sidecar")  # the tagger is not consulted


def test_sidecar_utf8_bom_and_non_ascii(tmp_path: Path) -> None:
    img = tmp_path / "b.png"
    sidecar_path(img).write_bytes("\ufeffchat noir, crème brûlée\n".encode())
    assert read_sidecar(img) == ("chat noir", "crème brûlée")


def test_bad_sidecar_encoding_is_a_clear_error(tmp_path: Path) -> None:
    img = tmp_path / "c.png"
    sidecar_path(img).write_bytes("crème".encode("latin-1"))
    with pytest.raises(TagError, match=r"c\.png\.tags.*not UTF-8.*0xe8 at offset 2"):
        read_sidecar(img)
    with pytest.raises(TagError, match="not UTF-8"):
        guidance().resolve(img, torch.rand(3, 8, 8))
    # an explicit --tags or --no-tags never reads the sidecar, so it still works
    assert guidance(TagConfig(tags=("x",))).resolve(img, torch.rand(3, 8, 8)).source == "cli"


def test_oversized_sidecar_is_an_error(tmp_path: Path) -> None:
    img = tmp_path / "d.png"
    sidecar_path(img).write_text("a," * 40000, encoding="utf-8")
    with pytest.raises(TagError, match="bytes, more than"):
        read_sidecar(img)


# --- metadata ----------------------------------------------------------------------------


def test_xmp_subjects_parser() -> None:
    assert xmp_subjects(xmp_packet(["cat", "garden"])) == ["cat", "garden"]
    assert xmp_subjects(b"garbage") == []
    assert xmp_subjects("<x:xmpmeta><unclosed") == []
    bomb = '<!DOCTYPE x [<!ENTITY a "aaaa">]>' + xmp_packet(["&a;"])
    assert xmp_subjects(bomb) == []  # DTDs/entities refused outright


def test_xmp_keywords_in_jpeg_and_png(tmp_path: Path) -> None:
    jpg, png = tmp_path / "x.jpg", tmp_path / "x.png"
    small_rgb().save(jpg, "JPEG", xmp=xmp_packet(["lighthouse", "sea"]).encode())
    info = PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp_packet(["mountain", "lake", "Mountain"]))
    small_rgb().save(png, "PNG", pnginfo=info)
    assert read_keywords(jpg) == ["lighthouse", "sea"]
    res = guidance().resolve(png, torch.rand(3, 8, 8))
    assert res == ResolvedTags(("mountain", "lake"), "metadata")


def test_iptc_keywords_in_jpeg(tmp_path: Path) -> None:
    utf8, latin = tmp_path / "i.jpg", tmp_path / "l.jpg"
    write_jpeg_with_iptc(utf8, ["Katze", "Gänseblümchen"], utf8=True)
    write_jpeg_with_iptc(latin, ["café"], utf8=False)
    assert Image.open(utf8).size == (32, 24)  # still a valid JPEG
    assert read_keywords(utf8) == ["Katze", "Gänseblümchen"]
    assert read_keywords(latin) == ["café"]
    assert guidance().resolve(utf8, torch.rand(3, 8, 8)).source == "metadata"


def test_no_or_broken_metadata_gives_no_keywords(tmp_path: Path) -> None:
    plain, junk = tmp_path / "p.png", tmp_path / "j.jpg"
    small_rgb().save(plain)
    junk.write_bytes(b"not an image at all")
    assert read_keywords(plain) == []
    assert read_keywords(junk) == []
    assert read_keywords(tmp_path / "missing.jpg") == []


# --- precedence --------------------------------------------------------------------------


def test_precedence_cli_sidecar_metadata(tmp_path: Path) -> None:
    img = tmp_path / "all.jpg"
    write_jpeg_with_iptc(img, ["from metadata"])
    lr = torch.rand(3, 8, 8)
    assert guidance().resolve(img, lr) == ResolvedTags(("from metadata",), "metadata")
    sidecar_path(img).write_text("from sidecar\n", encoding="utf-8")
    assert guidance().resolve(img, lr) == ResolvedTags(("from sidecar",), "sidecar")
    cli = guidance(TagConfig(tags=("from cli", "second")))
    assert cli.resolve(img, lr) == ResolvedTags(("from cli", "second"), "cli")
    off = guidance(TagConfig(enabled=False, tags=("ignored",)))
    assert off.resolve(img, lr) == ResolvedTags((), "off")
    assert off.encode(off.resolve(img, lr).tags) == (None, None)
    assert off._tagger is None and off._encoder is None  # nothing was loaded


def test_tag_config_validation() -> None:
    assert TagConfig(tags=(" cat", "cat ", "")).tags == ("cat",)
    assert TagConfig(tags="cat, grass").tags == ("cat", "grass")  # a raw --tags string is split
    for bad in (dict(top_k=0), dict(threshold=1.0), dict(threshold=-0.1), dict(tagger="vit")):
        with pytest.raises(ConfigError):
            TagConfig(**bad)


def test_resolved_tags_report() -> None:
    res = ResolvedTags(("cat",), "tagger", (0.87654,))
    assert json.loads(json.dumps(res.to_dict())) == {
        "tags": ["cat"],
        "source": "tagger",
        "scores": [0.8765],
    }


# --- label table, cache helpers, input collection ----------------------------------------


def test_label_table() -> None:
    assert len(IMAGENET_LABELS) == 1000
    assert len({name.casefold() for name in IMAGENET_LABELS}) == 1000  # duplicates resolved
    assert all(name == name.strip() and 0 < len(name) <= 40 for name in IMAGENET_LABELS)
    assert (IMAGENET_LABELS[134], IMAGENET_LABELS[517]) == ("crane (bird)", "crane (machine)")
    assert (IMAGENET_LABELS[657], IMAGENET_LABELS[744]) == ("missile", "projectile")
    assert "cat" in IMAGENET_LABELS[285] and IMAGENET_LABELS[967] == "espresso"


def test_collect_images(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("b.png", "sub/a.jpg", "notes.txt", ".hidden.png", "b.png.tags"):
        (tmp_path / name).write_bytes(b"x")
    assert collect_images(str(tmp_path)) == [tmp_path / "b.png", tmp_path / "sub/a.jpg"]
    assert collect_images(str(tmp_path / "notes.txt")) == [tmp_path / "notes.txt"]
    assert collect_images("-", ["a.png\n", "\n", "# c\n", " b.jpg "]) == [Path("a.png"), Path("b.jpg")]
    with pytest.raises(ConfigError, match="no such file"):
        collect_images(str(tmp_path / "nope"))
