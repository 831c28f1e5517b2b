"""imageio: every ordinary mode in, the same kind out; orientation, ICC and EXIF carried."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image, ImageCms, ImageOps

from linearsr_cli.errors import ImageReadError
from linearsr_cli.imageio import (
    ORIENTATION_TAG,
    decode_image,
    encode_image,
    icc_colour_space,
    orient,
    png16_bytes,
    read_image,
)
from tests.conftest import synthetic_photo

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def pil_bytes(im: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **params)
    return buf.getvalue()


def rgb8(h: int = 12, w: int = 16) -> np.ndarray:
    return (synthetic_photo(h, w) * 255).round().astype(np.uint8)


def rgb16(h: int = 12, w: int = 16) -> np.ndarray:
    return (synthetic_photo(h, w) * 65535).round().astype(np.uint16)


def test_orient_matches_pillow_exif_transpose() -> None:
    arr = rgb8(5, 7)
    for o in range(1, 9):
        im = Image.fromarray(arr)
        exif = im.getexif()
        exif[ORIENTATION_TAG] = o
        data = pil_bytes(im, "PNG", exif=exif.tobytes())
        expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))
        assert np.array_equal(orient(arr, o), expected), o
        img = decode_image(data)
        assert np.array_equal((img.rgb.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), expected)


@pytest.mark.parametrize(
    ("mode", "gray", "has_alpha"),
    [("L", True, False), ("LA", True, True), ("RGB", False, False), ("RGBA", False, True), ("1", True, False)],
)
def test_png_8bit_modes(mode: str, gray: bool, has_alpha: bool) -> None:
    base = Image.fromarray(rgb8()).convert("RGBA")
    base.putalpha(Image.fromarray(np.tile(np.arange(16, dtype=np.uint8) * 16, (12, 1))))
    im = base.convert(mode)
    img = decode_image(pil_bytes(im, "PNG"))
    assert (img.gray, img.alpha is not None, img.bit_depth, img.format) == (gray, has_alpha, 8, "png")
    assert img.rgb.shape == (3, 12, 16) and img.rgb.dtype == torch.float32
    ref = np.asarray(im.convert("RGBA" if has_alpha else "RGB"), dtype=np.float32) / 255
    assert np.allclose(img.rgb.permute(1, 2, 0).numpy(), ref[..., :3], atol=1e-6)
    if has_alpha:
        assert np.allclose(img.alpha[0].numpy(), ref[..., 3], atol=1e-6)
    out = decode_image(encode_image(img, "png"))
    assert out.gray == gray and (out.alpha is not None) == has_alpha
    assert torch.allclose(out.rgb, img.rgb, atol=1 / 255 + 1e-6)


def test_palette_with_transparency_becomes_rgba() -> None:
    im = Image.fromarray(rgb8()).quantize(16)
    im.info["transparency"] = 0
    data = pil_bytes(im, "PNG", transparency=0)
    img = decode_image(data)
    assert img.alpha is not None and not img.gray
    idx = np.asarray(im)
    assert np.array_equal(img.alpha[0].numpy() == 0, idx == 0)
    plain = decode_image(pil_bytes(Image.fromarray(rgb8()).quantize(16), "PNG"))
    assert plain.alpha is None


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_png_16bit_roundtrip_exact(channels: int) -> None:
    arr = rgb16()
    if channels == 1:
        arr = arr[..., :1]
    elif channels == 2:
        arr = np.concatenate([arr[..., :1], arr[..., 2:3]], axis=2)
    elif channels == 4:
        arr = np.concatenate([arr, arr[..., :1]], axis=2)
    data = png16_bytes(arr, icc=SRGB if channels >= 3 else None)
    # our writer agrees with an independent decoder
    ref = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if channels >= 3:
        assert np.array_equal(ref[..., [2, 1, 0]], arr[..., :3])
    elif channels == 1:
        assert np.array_equal(ref, arr[..., 0])
    img = decode_image(data)
    assert img.bit_depth == 16 and img.gray == (channels <= 2) and (img.alpha is not None) == (channels in (2, 4))
    assert np.array_equal(np.rint(img.rgb[0].numpy() * 65535).astype(np.uint16), arr[..., 0])
    again = encode_image(img, "png")
    back = decode_image(again)
    assert back.bit_depth == 16
    assert torch.equal(back.rgb, img.rgb)
    if channels >= 3:
        assert back.icc == SRGB


def test_16bit_gray_pillow_and_16bit_tiff() -> None:
    gray = rgb16()[..., 0]
    img = decode_image(pil_bytes(Image.fromarray(gray), "PNG"))
    assert img.gray and img.bit_depth == 16
    assert np.array_equal(np.rint(img.rgb[1].numpy() * 65535).astype(np.uint16), gray)
    buf = io.BytesIO()
    tifffile.imwrite(buf, rgb16(), photometric="rgb", iccprofile=SRGB)
    timg = decode_image(buf.getvalue())
    assert (timg.bit_depth, timg.format, timg.gray, timg.icc) == (16, "tiff", False, SRGB)
    out = tifffile.imread(io.BytesIO(encode_image(timg, "tiff")))
    assert out.dtype == np.uint16 and np.array_equal(out, rgb16())
    assert decode_image(encode_image(timg, "jpg")).bit_depth == 8  # JPEG holds 8 bits


@pytest.mark.parametrize("mode", ["L", "RGB", "CMYK"])
def test_jpeg_modes(mode: str) -> None:
    im = Image.fromarray(rgb8(32, 32)).convert(mode)
    img = decode_image(pil_bytes(im, "JPEG", quality=95))
    assert img.gray == (mode == "L") and img.alpha is None and img.format == "jpg"
    ref = np.asarray(Image.open(io.BytesIO(pil_bytes(im, "JPEG", quality=95))).convert("RGB"), dtype=np.float32) / 255
    assert np.abs(img.rgb.permute(1, 2, 0).numpy() - ref).max() < 1e-6


@pytest.mark.parametrize(("fmt", "pil"), [("webp", "WEBP"), ("bmp", "BMP"), ("tiff", "TIFF")])
def test_other_formats(fmt: str, pil: str) -> None:
    im = Image.fromarray(rgb8()).convert("RGBA")
    im.putalpha(Image.fromarray(np.tile(np.arange(16, dtype=np.uint8) * 16, (12, 1))))
    params = {"lossless": True} if fmt == "webp" else {}
    if fmt == "bmp":
        im = im.convert("RGB")  # Pillow reads BMP alpha back as RGB
    img = decode_image(pil_bytes(im, pil, **params))
    assert img.format == fmt and (img.alpha is not None) == (fmt != "bmp")
    back = decode_image(encode_image(img, fmt, quality=100))
    assert (back.alpha is not None) == (fmt != "bmp")
    visible = img.alpha > 0.5 if img.alpha is not None else 1.0  # colour under transparent pixels may go
    assert ((back.rgb - img.rgb).abs() * visible).max() < 0.02
    if img.alpha is not None:
        assert (back.alpha - img.alpha).abs().max() < 0.01


def test_icc_and_exif_carried_with_orientation_reset() -> None:
    im = Image.fromarray(rgb8(10, 14))
    exif = im.getexif()
    exif[ORIENTATION_TAG] = 6
    exif[0x010F] = "LinearSR test camera"  # Make
    data = pil_bytes(im, "JPEG", quality=95, exif=exif.tobytes(), icc_profile=SRGB)
    img = decode_image(data)
    assert img.rgb.shape == (3, 14, 10)  # rotated upright
    assert img.icc == SRGB
    for fmt in ("jpg", "png", "webp", "tiff"):
        out = Image.open(io.BytesIO(encode_image(img, fmt)))
        assert out.info.get("icc_profile") == SRGB, fmt
        assert out.size == (10, 14), fmt
        if fmt != "tiff":
            ex = out.getexif()
            assert ex.get(ORIENTATION_TAG) == 1, fmt
            assert ex.get(0x010F) == "LinearSR test camera", fmt


def test_alpha_flattened_on_white_for_jpeg() -> None:
    im = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    img = decode_image(pil_bytes(im, "PNG"))
    out = np.asarray(Image.open(io.BytesIO(encode_image(img, "jpg"))))
    assert out.shape == (8, 8, 3) and out.min() >= 250


def test_icc_colour_space() -> None:
    assert icc_colour_space(SRGB) == "RGB"
    assert icc_colour_space(b"short") is None
    fake_cmyk = bytes(16) + b"CMYK" + bytes(108)
    assert icc_colour_space(fake_cmyk) == "CMYK"


def test_bad_files(tmp_path) -> None:
    good = pil_bytes(Image.fromarray(rgb8(64, 64)), "PNG")
    cases = {
        "empty.png": (b"", "empty file"),
        "text.png": (b"hello, I am not an image\n" * 4, "not an image"),
        "truncated.png": (good[: len(good) // 2], "truncated"),
        "garbage.jpg": (b"\xff\xd8\xff\xe0" + bytes(200), "not an image|corrupt"),
        "truncated.jpg": (pil_bytes(Image.fromarray(rgb8(64, 64)), "JPEG")[:400], "truncated|corrupt"),
    }
    for name, (data, reason) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ImageReadError, match=reason):
            read_image(path)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(good)
    with pytest.raises(ImageReadError, match="max-pixels"):
        read_image(bomb, max_pixels=64 * 64 - 1)
    with pytest.raises(ImageReadError, match="cannot read"):
        read_image(tmp_path / "missing.png")


@pytest.mark.parametrize("depth", [8, 16])
def test_png_level_is_lossless_at_every_level_and_validated(depth: int) -> None:
    """--png-level only trades time for size: the pixels survive at 1, 3 and 9, and 9 is no
    larger than 1 on a photo-like image."""
    from linearsr_cli.engine.plan import OutputConfig
    from linearsr_cli.errors import ConfigError
    from linearsr_cli.imageio import png16_bytes

    photo = synthetic_photo(64, 80, seed=1)  # (h, w, 3) float in [0, 1]
    if depth == 8:
        img = decode_image(pil_bytes(Image.fromarray((photo * 255).round().astype(np.uint8)), "PNG"))
    else:
        img = decode_image(png16_bytes((photo * 65535).round().astype(np.uint16)))
    sizes = {}
    for level in (1, 3, 9):
        data = encode_image(img, "png", png_level=level)
        back = decode_image(data)
        assert back.bit_depth == depth and torch.equal(back.rgb, img.rgb)
        sizes[level] = len(data)
    assert sizes[9] <= sizes[1]
    with pytest.raises(ConfigError, match="png-level"):
        OutputConfig(png_level=10)
