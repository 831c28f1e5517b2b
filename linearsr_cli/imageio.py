"""Image files <-> tensors: modes, bit depth, alpha, EXIF orientation, ICC profile and EXIF.

The engine sees every image the same way: RGB as (3, h, w) float32 in [0, 1] after the EXIF
orientation is applied, plus an optional alpha plane (1, h, w). `ImageData` remembers what the
file was (gray or colour, 8 or 16 bit, format, ICC profile, EXIF with the orientation reset) so
`encode_image` can write the upscaled result back in kind.

Decoders: Pillow for 8-bit images and 16-bit gray; OpenCV for 16-bit colour PNG and tifffile
for 16-bit colour TIFF (Pillow holds those only at 8 bits); HEIC/HEIF through `pillow-heif` and
AVIF through Pillow's own plugin (the `heif` extra; 8 bits). 16-bit PNGs are written by a small
PNG writer here so gray+alpha and the iCCP/eXIf chunks work at 16 bits.

Outputs can carry a text record (the settings that made them, engine/record.py) in a metadata
chunk that leaves the pixels alone: a PNG tEXt chunk, a JPEG comment, a TIFF ImageDescription,
XMP in WebP/HEIC/AVIF; BMP holds none.
"""

from __future__ import annotations

import io
import re
import struct
import warnings
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from xml.sax.saxutils import escape as xml_escape
from xml.sax.saxutils import unescape as xml_unescape

import numpy as np
import torch
from PIL import Image, ImageFile, UnidentifiedImageError
from torch import Tensor

from linearsr_cli.errors import ImageReadError, ImageWriteError
from linearsr_cli.jpeg_quality import estimate_jpeg_quality
from linearsr_cli.pixels import as_float, quantize

# We enforce our own --max-pixels limit before decoding, so Pillow's global guard is lifted
# (its 179 MP hard stop would otherwise override a user's larger limit).
Image.MAX_IMAGE_PIXELS = None
ImageFile.LOAD_TRUNCATED_IMAGES = False

ORIENTATION_TAG = 0x0112
DEFAULT_MAX_PIXELS = 64_000_000
FORMATS = ("png", "jpg", "webp", "tiff", "bmp", "heic", "avif")
EXTENSIONS = {
    "png": ".png", "jpg": ".jpg", "webp": ".webp", "tiff": ".tif", "bmp": ".bmp", "heic": ".heic", "avif": ".avif",
}
READABLE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".tif", ".tiff", ".webp", ".bmp", ".gif", ".heic", ".heif", ".hif",
     ".avif"}
)
_PIL_FORMAT = {
    "PNG": "png", "JPEG": "jpg", "MPO": "jpg", "TIFF": "tiff", "WEBP": "webp", "BMP": "bmp", "HEIF": "heic",
    "AVIF": "avif",
}
_SAVE_NAME = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP", "tiff": "TIFF", "bmp": "BMP", "heic": "HEIF", "avif": "AVIF"}
RECORD_KEY = "linearsr"  # the PNG text keyword / XMP property of the settings record
HEIF_EXTRA_HINT = "install the heif extra: pip install -e '.[heif]' (make install includes it)"
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")


def heif_available() -> bool:
    """Whether HEIC/HEIF can be read and written (pillow-heif importable); registers its opener."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def avif_available() -> bool:
    """Whether Pillow reads and writes AVIF (its own plugin, Pillow >= 11.3 wheels)."""
    from PIL import features

    return bool(features.check("avif"))


def _container_brand(data: bytes) -> bytes | None:
    """The major brand of an ISO-BMFF file (HEIF/AVIF: 'ftyp' at byte 4), else None."""
    return data[8:12] if len(data) >= 12 and data[4:8] == b"ftyp" else None


@dataclass(frozen=True)
class ImageData:
    """A decoded image, oriented upright.

    rgb (3, h, w) float32 in [0, 1]; alpha (1, h, w) float32 in [0, 1] or None; gray: the file
    had one colour channel (it is replicated to 3 here); bit_depth 8 or 16; format: the file's
    format as one of FORMATS; icc: ICC profile bytes that fit the output's colour space; exif:
    EXIF bytes with the orientation reset to 1 (None when there was none); jpeg_quality: the
    quality a JPEG was saved with, from its quantisation tables (None for other formats).
    """

    rgb: Tensor
    alpha: Tensor | None
    gray: bool
    bit_depth: int
    format: str
    icc: bytes | None = None
    exif: bytes | None = None
    jpeg_quality: int | None = None

    @property
    def height(self) -> int:
        return int(self.rgb.shape[-2])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[-1])


def orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1..8, TIFF 6.0 tag 274) to an (h, w, ...) array, giving the
    upright image (the same result as PIL.ImageOps.exif_transpose)."""
    if orientation == 2:
        arr = arr[:, ::-1]
    elif orientation == 3:
        arr = arr[::-1, ::-1]
    elif orientation == 4:
        arr = arr[::-1]
    elif orientation == 5:
        arr = arr.swapaxes(0, 1)
    elif orientation == 6:
        arr = arr[::-1].swapaxes(0, 1)  # rotate 90 degrees clockwise
    elif orientation == 7:
        arr = arr[::-1, ::-1].swapaxes(0, 1)
    elif orientation == 8:
        arr = arr[:, ::-1].swapaxes(0, 1)  # rotate 90 degrees counter-clockwise
    return np.ascontiguousarray(arr)


def icc_colour_space(icc: bytes | None) -> str | None:
    """The data colour space signature of an ICC profile (header bytes 16..20): 'RGB', 'GRAY', 'CMYK'."""
    if not icc or len(icc) < 20:
        return None
    return icc[16:20].decode("latin-1").strip()


def _raw_mode(im: Image.Image) -> str:
    """The decoder's raw mode of an opened (not yet loaded) image, e.g. 'RGB;16B', or ''."""
    for t in im.tile:
        args = getattr(t, "args", t[3] if len(t) > 3 else "")
        return str(args[0] if isinstance(args, tuple) and args else args)
    return ""


def _sixteen_bit(im: Image.Image) -> tuple[bool, bool]:
    """(16 bits per sample?, one colour channel?) of an opened, not yet loaded image."""
    raw = _raw_mode(im)
    gray = im.mode in ("1", "L", "LA", "La", "I", "F") or im.mode.startswith("I;16") or raw.startswith(("L", "I"))
    if im.mode.startswith("I;16"):
        return True, True
    if im.format == "PNG":
        return ";16" in raw, gray
    if im.format == "TIFF":
        bits = im.tag_v2.get(258) or (8,)
        bits = bits if isinstance(bits, tuple) else (bits,)
        return any(int(b) == 16 for b in bits), gray
    return False, gray


def _decode_sixteen(data: bytes, im: Image.Image) -> np.ndarray:
    """16-bit pixels as an (h, w, c) uint16 array in RGB(A) order, not yet oriented."""
    if im.mode.startswith("I;16"):
        return np.asarray(im.convert("I;16") if im.mode != "I;16" else im).astype(np.uint16)[..., None]
    if im.format == "TIFF":
        import tifffile

        arr = tifffile.imread(io.BytesIO(data))
        if arr.ndim == 3 and arr.shape[0] in (1, 2, 3, 4) and arr.shape[-1] not in (1, 2, 3, 4):
            arr = np.moveaxis(arr, 0, -1)  # planar (c, h, w) -> (h, w, c)
        return (arr if arr.ndim == 3 else arr[..., None]).astype(np.uint16)
    import cv2

    arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ImageReadError("OpenCV cannot decode this 16-bit image")
    if arr.ndim == 2:
        return arr[..., None]
    order = [2, 1, 0, 3][: arr.shape[2]]  # BGR(A) -> RGB(A)
    return arr[..., order]


def _decode_eight(im: Image.Image) -> tuple[np.ndarray, bool]:
    """8-bit (or float/32-bit gray) pixels as (h, w, c) float32 in [0, 1], and whether gray."""
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode == "PA":
        im = im.convert("RGBA")
    elif mode in ("1",):
        im = im.convert("L")
    elif mode == "La":
        im = im.convert("LA")
    elif mode == "RGBa":
        im = im.convert("RGBA")
    elif mode == "I":
        arr = np.asarray(im).astype(np.float32)
        return (np.clip(arr / (65535.0 if arr.max() > 255 else 255.0), 0, 1))[..., None], True
    elif mode == "F":
        return np.clip(np.asarray(im).astype(np.float32), 0, 1)[..., None], True
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        im = im.convert("RGB")  # CMYK, YCbCr, LAB, HSV
    arr = np.asarray(im, dtype=np.float32) / 255.0
    if arr.ndim == 2:
        arr = arr[..., None]
    return arr, im.mode in ("L", "LA")


def _exif_bytes(im: Image.Image) -> tuple[int, bytes | None]:
    """The EXIF orientation, and EXIF bytes with the orientation reset (None if no EXIF)."""
    try:
        exif = im.getexif()
    except Exception:  # noqa: BLE001 - broken EXIF must not lose the pixels
        return 1, None
    orientation = int(exif.get(ORIENTATION_TAG, 1) or 1)
    if orientation not in range(1, 9):
        orientation = 1
    if im.format == "TIFF" or not len(exif):
        return orientation, None  # a TIFF's "EXIF" is its own IFD of layout tags: not carried
    if ORIENTATION_TAG in exif:
        exif[ORIENTATION_TAG] = 1
    try:
        return orientation, exif.tobytes()
    except Exception:  # noqa: BLE001
        return orientation, None


def read_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageData:
    """Decode an image file; raises ImageReadError saying why it cannot be used."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageReadError(f"cannot read file: {exc.strerror or exc}") from None
    return decode_image(data, max_pixels=max_pixels)


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageData:
    """Decode image bytes (see read_image)."""
    if not data:
        raise ImageReadError("empty file (0 bytes)")
    brand = _container_brand(data)
    if brand in _HEIF_BRANDS and not heif_available():
        raise ImageReadError(f"HEIC/HEIF image, but pillow-heif is not installed: {HEIF_EXTRA_HINT}")
    if brand in (b"avif", b"avis") and not avif_available():
        raise ImageReadError(f"AVIF image, but this Pillow cannot read AVIF: {HEIF_EXTRA_HINT}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(io.BytesIO(data))
            w, h = im.size
            if w * h > max_pixels:
                raise ImageReadError(
                    f"{w}x{h} = {w * h:,} pixels exceeds --max-pixels {max_pixels:,} "
                    "(decompression-bomb guard)"
                )
            sixteen, gray16 = _sixteen_bit(im)
            im.load()
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError("not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"corrupt or truncated image: {exc}") from None
    if w < 1 or h < 1:
        raise ImageReadError(f"image has no pixels ({w}x{h})")
    fmt = _PIL_FORMAT.get(im.format or "", "png")
    orientation, exif = _exif_bytes(im)
    icc = im.info.get("icc_profile") or None
    try:
        if sixteen:
            arr16 = _decode_sixteen(data, im)
            gray = arr16.shape[2] <= 2 or gray16
            arr = arr16.astype(np.float32) / 65535.0
            depth = 16
        else:
            arr, gray = _decode_eight(im)
            depth = 8
    except ImageReadError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageReadError(f"corrupt or truncated image: {exc}") from None
    arr = orient(arr, orientation)
    channels = arr.shape[2]
    has_alpha = channels in (2, 4)
    colour = arr[..., :1].repeat(3, axis=2) if channels <= 2 else arr[..., :3]
    if gray and channels > 2:  # e.g. 16-bit gray+alpha that OpenCV expanded to BGRA
        colour = arr[..., :3]
    rgb = torch.from_numpy(np.ascontiguousarray(colour.transpose(2, 0, 1))).float()  # (3, h, w)
    alpha = None
    if has_alpha:
        alpha = torch.from_numpy(np.ascontiguousarray(arr[..., -1][None])).float()  # (1, h, w)
    want = "GRAY" if gray else "RGB"
    if icc_colour_space(icc) != want:
        icc = None  # e.g. a CMYK profile of a JPEG we converted to RGB
    return ImageData(rgb=rgb, alpha=alpha, gray=gray, bit_depth=depth, format=fmt, icc=icc, exif=exif,
                     jpeg_quality=_jpeg_quality(im))


def read_jpeg_quality(path: str | Path) -> int | None:
    """The JPEG quality a file says, from its header alone (no pixels decoded); None for any
    other format. For a file already read whole, ImageData.jpeg_quality has it."""
    with Image.open(path) as im:
        return _jpeg_quality(im)


def _jpeg_quality(im: Image.Image) -> int | None:
    """The quality of a JPEG by its quantisation tables (jpeg_quality.py); None otherwise."""
    tables = getattr(im, "quantization", None) if im.format in ("JPEG", "MPO") else None
    if not tables:
        return None
    try:
        return estimate_jpeg_quality(tables)
    except ImageReadError:
        return None


def from_pil(im: Image.Image) -> tuple[ImageData, str]:
    """A PIL image as ImageData, the way read_image decodes a file (EXIF orientation applied,
    16-bit gray kept at 16 bits), and the PIL mode `to_pil` should give back."""
    orientation, exif = _exif_bytes(im)
    mode = im.mode
    if mode.startswith("I;16"):
        arr = np.asarray(im).astype(np.float32)[..., None] / 65535.0
        gray, depth, back = True, 16, "I;16"
    else:
        arr, gray = _decode_eight(im)
        wide = mode == "I" and np.asarray(im).max() > 255  # as _decode_eight scaled it
        depth = 16 if wide else 8
        back = {"I": "I", "F": "F", "1": "L", "L": "L", "LA": "LA", "La": "LA", "RGBA": "RGBA", "RGBa": "RGBA"}.get(mode)
        if back is None:
            back = "RGBA" if arr.shape[2] == 4 else "RGB"  # P, PA, CMYK, YCbCr, LAB, HSV
    arr = orient(arr, orientation)
    channels = arr.shape[2]
    colour = arr[..., :1].repeat(3, axis=2) if channels <= 2 else arr[..., :3]
    rgb = torch.from_numpy(np.ascontiguousarray(colour.transpose(2, 0, 1))).float()  # (3, h, w)
    alpha = torch.from_numpy(np.ascontiguousarray(arr[..., -1][None])).float() if channels in (2, 4) else None
    icc = im.info.get("icc_profile") or None
    if icc_colour_space(icc) != ("GRAY" if gray else "RGB"):
        icc = None
    data = ImageData(rgb=rgb, alpha=alpha, gray=gray, bit_depth=depth, format="png", icc=icc, exif=exif,
                     jpeg_quality=_jpeg_quality(im))  # a JPEG opened with PIL routes as its file would
    return data, back


def to_pil(img: ImageData, mode: str | None = None) -> Image.Image:
    """ImageData as a PIL image of `mode` (from_pil's second value; default: the image's own kind):
    I;16 and I keep 16 bits, F stays float; L, LA, RGB, RGBA at 8 bits. PIL has no 16-bit colour or
    16-bit gray+alpha mode: those come back at 8 bits. ICC and EXIF go into .info."""
    if mode is None:
        mode = ("I;16" if img.alpha is None else "LA") if img.gray and img.bit_depth == 16 else None
        mode = mode or ("L" if img.gray else "RGB") + ("A" if img.alpha is not None else "")
    if mode == "F":
        out = Image.fromarray((as_float(img.rgb).clamp(0, 1) * LUMA).sum(0).numpy().astype(np.float32), mode="F")
    else:
        keep16 = mode in ("I;16", "I") and img.bit_depth == 16
        arr, depth = _to_array(replace(img, bit_depth=16 if keep16 else 8), "png")  # (h, w, c)
        if mode in ("I;16", "I") and depth == 16:
            plane = arr[..., 0]
            out = Image.fromarray(plane.astype(np.int32), mode="I") if mode == "I" else Image.fromarray(plane)
        elif mode == "I":
            out = Image.fromarray(arr[..., 0].astype(np.int32), mode="I")
        else:
            pil_mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[arr.shape[2]]
            out = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr, mode=pil_mode)
    if img.icc:
        out.info["icc_profile"] = img.icc
    if img.exif:
        out.info["exif"] = img.exif
    return out


LUMA = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)  # Rec. 601 luma: how gray outputs are made
ARRAY_BAND_VALUES = 1 << 22  # pixels converted at a time by _to_array: bounded float temporaries


def _to_array(img: ImageData, fmt: str) -> tuple[np.ndarray, int]:
    """The pixels to write as (h, w, c) uint8/uint16 for `fmt`, and the bit depth chosen. The
    conversion runs in bands of rows, so a big uint16 canvas (pixels.py) never has a float copy."""
    depth = 16 if img.bit_depth == 16 and fmt in ("png", "tiff") else 8
    gray = img.gray and fmt not in ("webp", "heic", "avif")  # WebP, HEIC and AVIF (as written here) have no gray mode
    flatten = img.alpha is not None and fmt == "jpg"  # JPEG has no alpha: flatten on white
    keep_alpha = img.alpha is not None and not flatten
    h, w = img.height, img.width
    out = np.empty((h, w, (1 if gray else 3) + keep_alpha), dtype=np.uint16 if depth == 16 else np.uint8)
    rows = max(1, ARRAY_BAND_VALUES // max(w, 1))
    for r0 in range(0, h, rows):
        rgb = as_float(img.rgb[:, r0 : r0 + rows]).clamp(0, 1)
        alpha = img.alpha[:, r0 : r0 + rows].float().clamp(0, 1) if img.alpha is not None else None
        if gray:
            rgb = (rgb * LUMA).sum(0, keepdim=True)  # (1, rows, W)
        if flatten:
            rgb = rgb * alpha + (1.0 - alpha)
        band = torch.cat([rgb, alpha]) if keep_alpha else rgb
        out[r0 : r0 + rows] = quantize(band, torch.uint16 if depth == 16 else torch.uint8).permute(1, 2, 0).numpy()
    return out, depth


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


PNG_LEVEL = 3  # zlib level of PNG output: 2.6x faster than 6 for ~8 % larger files (BENCHMARKS.md)


def png16_bytes(
    arr: np.ndarray, *, icc: bytes | None = None, exif: bytes | None = None, level: int = PNG_LEVEL,
    record: str | None = None,
) -> bytes:
    """A 16-bit PNG (PNG spec, ISO 15948) of an (h, w, c) uint16 array, c in 1..4, with the
    'Up' row filter, and optional iCCP, eXIf and tEXt (`record`, keyword RECORD_KEY) chunks."""
    h, w, c = arr.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    rows = arr.astype(">u2").reshape(h, w * c).view(np.uint8)  # (h, 2 w c) big-endian bytes
    up = rows.copy()
    up[1:] = rows[1:] - rows[:-1]  # 'Up' filter: byte minus the byte above, mod 256
    raw = np.concatenate([np.full((h, 1), 2, dtype=np.uint8), up], axis=1)  # filter byte per row
    out = [b"\x89PNG\r\n\x1a\n", _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0))]
    if icc:
        out.append(_png_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(icc)))
    if exif:
        out.append(_png_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
    if record:
        out.append(_png_chunk(b"tEXt", RECORD_KEY.encode("latin-1") + b"\x00" + record.encode("latin-1")))
    out.append(_png_chunk(b"IDAT", zlib.compress(raw.tobytes(), level)))
    out.append(_png_chunk(b"IEND", b""))
    return b"".join(out)


def holds_record(fmt: str) -> bool:
    """Whether outputs of `fmt` carry a settings record (every format but BMP)."""
    return fmt != "bmp"


def _xmp_packet(record: str) -> bytes:
    """A minimal XMP packet holding `record` as the text of one linearsr:record property."""
    return (
        '<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
        f'xmlns:{RECORD_KEY}="https://linearsr.invalid/ns/1.0/"><{RECORD_KEY}:record>{xml_escape(record)}'
        f'</{RECORD_KEY}:record></rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="r"?>'
    ).encode("utf-8")


_XMP_RECORD = re.compile(rf"<{RECORD_KEY}:record>(.*?)</{RECORD_KEY}:record>", re.S)


def read_record(path: str | Path) -> str | None:
    """The settings record an output carries (see the module docstring), or None: no record, or
    not an image we can open. Reads the header only."""
    try:
        data = Path(path).read_bytes()
        if _container_brand(data) in _HEIF_BRANDS:
            heif_available()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(io.BytesIO(data))
            if im.format == "PNG":
                text = im.info.get(RECORD_KEY)
                return text if isinstance(text, str) else None
            if im.format in ("JPEG", "MPO"):
                comment = im.info.get("comment")
                return comment.decode("utf-8", "replace") if isinstance(comment, bytes) and comment else None
            if im.format == "TIFF":
                text = im.tag_v2.get(270)
                return text if isinstance(text, str) and text.startswith("{") else None
            xmp = im.info.get("xmp")
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, UnidentifiedImageError):
        return None
    if isinstance(xmp, bytes | str):
        text = xmp.decode("utf-8", "replace") if isinstance(xmp, bytes) else xmp
        found = _XMP_RECORD.search(text)
        return xml_unescape(found.group(1)) if found else None
    return None


def encode_image(
    img: ImageData, fmt: str, *, quality: int = 95, png_level: int = PNG_LEVEL, record: str | None = None
) -> bytes:
    """Encode `img` as `fmt` (one of FORMATS) in memory, keeping ICC/EXIF where the format can,
    with `record` (ASCII text) in a metadata chunk when the format holds one (holds_record).

    16-bit stays 16-bit in PNG and TIFF; JPEG, WebP, HEIC, AVIF and BMP get 8 bits. Alpha is kept
    except in JPEG, where the image is flattened onto white.
    """
    if fmt not in FORMATS:
        raise ImageWriteError(f"unknown output format {fmt!r}")
    if fmt == "heic" and not heif_available():
        raise ImageWriteError(f"HEIC output needs pillow-heif: {HEIF_EXTRA_HINT}")
    if fmt == "avif" and not avif_available():
        raise ImageWriteError(f"AVIF output needs a Pillow with AVIF: {HEIF_EXTRA_HINT}")
    arr, depth = _to_array(img, fmt)
    icc = img.icc if fmt != "bmp" else None
    exif = img.exif if fmt in ("png", "jpg", "webp", "tiff", "heic", "avif") else None
    record = record if holds_record(fmt) else None
    try:
        if depth == 16 and fmt == "png":
            return png16_bytes(arr, icc=icc, exif=exif, level=png_level, record=record)
        if depth == 16:
            import tifffile

            buf = io.BytesIO()
            c = arr.shape[2]
            tifffile.imwrite(
                buf,
                arr if c > 1 else arr[..., 0],
                photometric="rgb" if c >= 3 else "minisblack",
                extrasamples=["unassalpha"] if c in (2, 4) else None,
                compression="zlib",
                iccprofile=icc,
                **({"description": record, "metadata": None} if record else {}),
            )
            return buf.getvalue()
        mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[arr.shape[2]]
        pil = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr, mode=mode)
        if fmt == "bmp" and mode == "LA":
            pil = pil.convert("RGBA")
        params: dict[str, object] = {}
        if icc:
            params["icc_profile"] = icc
        if exif:
            params["exif"] = exif
        if fmt in ("jpg", "webp", "heic", "avif"):
            params["quality"] = int(quality)
        if record and fmt == "png":
            from PIL.PngImagePlugin import PngInfo

            info = PngInfo()
            info.add_text(RECORD_KEY, record)
            params["pnginfo"] = info
        elif record and fmt == "jpg":
            params["comment"] = record.encode("utf-8")
        elif record and fmt == "tiff":
            params["description"] = record
        elif record:
            params["xmp"] = _xmp_packet(record)
        if fmt == "webp" and quality >= 100:
            params["lossless"] = True  # --quality 100 = lossless WebP
        if fmt == "png":
            params["compress_level"] = int(png_level)
        if fmt == "tiff":
            params["compression"] = "tiff_adobe_deflate"
        buf = io.BytesIO()
        pil.save(buf, format=_SAVE_NAME[fmt], **params)
        return buf.getvalue()
    except (OSError, ValueError, KeyError) as exc:
        raise ImageWriteError(f"cannot encode {fmt}: {exc}") from None


def with_pixels(img: ImageData, rgb: Tensor, alpha: Tensor | None) -> ImageData:
    """The same image description with new (upscaled) pixels."""
    return replace(img, rgb=rgb, alpha=alpha)
