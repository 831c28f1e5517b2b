"""The training photographs: fetched from four Debian packages, reviewed by hand, split, recorded.

Pipeline of `fetch_photos`: `apt-get download` + `dpkg -x` the packages into a cache folder, list
the candidate files of each package, keep the ones in `KEEP` (every other candidate is excluded,
with the reason from `DROP`), cut the photo out of the Enlightenment Eet archives, undo EXIF
rotation, halve the JPEGs of quality <= 90 (MATLAB-style bicubic, to wash out JPEG artefacts),
hold out a fixed validation subset and write PNGs plus data/photos/manifest.json.

The Eet reader, the JPEG quality estimate, the licence lookup and the split are pure functions
(tested on synthetic inputs); subprocess and file I/O stay in the functions at the bottom.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import re
import shutil
import struct
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from linearsr_cli.degrade import bicubic_downscale
from linearsr_cli.errors import ConfigError, ImageReadError, TrainingError
from linearsr_cli.jpeg_quality import estimate_jpeg_quality

# ---------------------------------------------------------------------------------------------
# What we take from where, and why
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """A folder of candidate images inside one Debian package (relative to the package root)."""

    package: str
    folder: str
    suffixes: tuple[str, ...]
    prefix: str  # short tag that starts the output file names


SOURCES: tuple[Source, ...] = (
    Source("enlightenment-data", "usr/share/enlightenment/data/backgrounds", (".edj",), "e"),
    Source("lomiri-wallpapers-16.04", "usr/share/backgrounds", (".jpg", ".jpeg", ".png"), "lomiri"),
    Source(
        "mate-backgrounds", "usr/share/backgrounds/mate/nature", (".jpg", ".jpeg", ".png"), "mate"
    ),
    Source("lxqt-themes", "usr/share/lxqt/wallpapers", (".jpg", ".jpeg", ".png"), "lxqt"),
)
PACKAGES: tuple[str, ...] = tuple(s.package for s in SOURCES)

# Every candidate was looked at (full frame and 1:1 crops). Kept: real photographs.
KEEP: dict[tuple[str, str], str] = {
    ("enlightenment-data", "Bamboo.edj"): "bamboo stems and leaves, backlit",
    (
        "enlightenment-data",
        "Foggy-Trees.edj",
    ): "conifers in dense fog (mostly flat, crops filtered)",
    ("enlightenment-data", "God-Rays.edj"): "sun rays through clouds",
    ("enlightenment-data", "Green-Maple.edj"): "maple leaves",
    ("enlightenment-data", "Lichen-Branches.edj"): "lichen on branches, shallow focus",
    ("enlightenment-data", "Mountain.edj"): "snow peak at dusk",
    ("enlightenment-data", "Peaks.edj"): "mountain ridge at night, dark",
    ("enlightenment-data", "Red-Maple.edj"): "red maple leaves",
    ("enlightenment-data", "Sea-of-Lanterns.edj"): "field of paper lanterns",
    ("enlightenment-data", "Snow-Trees.edj"): "birches on snow, aerial",
    ("enlightenment-data", "Spruce-Needles.edj"): "spruce twig, macro",
    ("enlightenment-data", "Sunset-Clouds.edj"): "clouds at sunset",
    ("enlightenment-data", "White-Flower.edj"): "frangipani flower and leaves",
    ("enlightenment-data", "Yellow-Flower.edj"): "yellow flower, macro",
    (
        "lomiri-wallpapers-16.04",
        "Bridge_by_Sander_Klootwijk.jpg",
    ): "bridge cables over a tidal flat",
    ("lomiri-wallpapers-16.04", "Dragonfly_by_Bolly.jpg"): "dragonfly on a twig, foliage",
    ("lomiri-wallpapers-16.04", "Picture_0B_by_freespace.jpg"): "fig in a red bowl on concrete",
    ("lomiri-wallpapers-16.04", "Picture_1A_by_freespace.jpg"): "paint brushes, close-up",
    ("lomiri-wallpapers-16.04", "Wine_by_Jakkub_Mede.jpg"): "room interior with drum and wine",
    (
        "lomiri-wallpapers-16.04",
        "aitzgorri_by_Aitzol_Berasategi.jpg",
    ): "mountain, autumn forest, meadow",
    ("lomiri-wallpapers-16.04", "free_by_Peter_Nerlich.jpg"): "bird figurine under lamps",
    ("lomiri-wallpapers-16.04", "friends_by_Aitzol_Berasategi.jpg"): "two dogs at a wooden window",
    ("lomiri-wallpapers-16.04", "greentock_by_Peter_Nerlich.jpg"): "wall clock, oblique view",
    ("lomiri-wallpapers-16.04", "life_by_Aitzol_Berasategi.jpg"): "forest creek over rocks",
    (
        "lomiri-wallpapers-16.04",
        "picosdeeuropa_by_Aitzol_Berasategi.jpg",
    ): "mountain path and rocks",
    ("lomiri-wallpapers-16.04", "seeding_by_Clements_Engelhardt.jpg"): "dandelion clocks at sunset",
    ("lomiri-wallpapers-16.04", "sunset_by_Aitzol_Berasategi.jpg"): "sunset over a mountain top",
    ("mate-backgrounds", "Aqua.jpg"): "water drop splash",
    ("mate-backgrounds", "Blinds.jpg"): "leaf veins, macro",
    ("mate-backgrounds", "Dune.jpg"): "dune grass and sea",
    ("mate-backgrounds", "FreshFlower.jpg"): "orange flower, macro",
    ("mate-backgrounds", "Garden.jpg"): "marigold, shallow focus",
    ("mate-backgrounds", "GreenMeadow.jpg"): "young grass",
    ("mate-backgrounds", "LadyBird.jpg"): "ladybird on a stem, flowers",
    ("mate-backgrounds", "RainDrops.jpg"): "rain drops on leaves",
    ("mate-backgrounds", "Storm.jpg"): "storm clouds over a road (motion blur in the foreground)",
    ("mate-backgrounds", "TwoWings.jpg"): "dandelion seeds, bokeh",
    ("mate-backgrounds", "Wood.jpg"): "wooden plank in perspective, shallow focus",
    ("mate-backgrounds", "YellowFlower.jpg"): "yellow flower, macro",
    ("lxqt-themes", "Butterfly-Kenneth-Wimer.jpg"): "butterfly on a flower stem",
    ("lxqt-themes", "Valendas.png"): "mountains under clouds",
    ("lxqt-themes", "after-the-rain.jpg"): "clouds at sunset",
    ("lxqt-themes", "appleflower.png"): "apple blossom twig",
    ("lxqt-themes", "beam.png"): "light beam over wooded hills",
    ("lxqt-themes", "butterfly.png"): "swallowtail on a flower",
    ("lxqt-themes", "cloud.png"): "altocumulus sky",
    ("lxqt-themes", "drop.png"): "drop on a grass blade",
    ("lxqt-themes", "flowers.png"): "meadow flowers",
    ("lxqt-themes", "fog.jpg"): "fog over a field",
    ("lxqt-themes", "this-is-not-windows.jpg"): "green hills, blue sky",
}

# Candidates we looked at and excluded, with the reason.
DROP: dict[tuple[str, str], str] = {
    ("enlightenment-data", "Dunes.edj"): "render: flat vector illustration of dunes and a sun",
    ("enlightenment-data", "Flat-Fan.edj"): "render: flat coloured fan shapes",
    ("enlightenment-data", "Flat-Stone-Pattern.edj"): "texture: small tileable stone pattern",
    (
        "enlightenment-data",
        "Paper-Flower.edj",
    ): "texture: paper background (flower is a drawn overlay)",
    ("enlightenment-data", "Sunset-Hills.edj"): "render: layered flat hills with gradients",
    ("enlightenment-data", "Squiggle.edj"): "render: vector art, no JPEG inside",
    ("enlightenment-data", "Squiggle-Dark.edj"): "render: vector art, no JPEG inside",
    ("enlightenment-data", "Squiggle-Light.edj"): "render: vector art, no JPEG inside",
    ("enlightenment-data", "Squiggle-Mid.edj"): "render: vector art, no JPEG inside",
    (
        "lomiri-wallpapers-16.04",
        "analogpattern_by_Peter_Nerlich.jpg",
    ): "texture: colour-toned close-up of a textured surface",
    ("lomiri-wallpapers-16.04", "umang_by_Abhishek_Mudgal.jpg"): "render: abstract colour gradient",
    ("lxqt-themes", "kde-plasma.png"): "render: abstract triangles",
    ("lxqt-themes", "lxqt-origami-green.png"): "render: logo on gradient",
    ("lxqt-themes", "origami-bright-logo.png"): "render: logo on gradient",
    ("lxqt-themes", "origami-dark.png"): "render: logo on gradient",
    ("lxqt-themes", "origami-light.png"): "render: logo on gradient",
    ("lxqt-themes", "plasma-logo-bright.png"): "render: logo on abstract shapes",
    ("lxqt-themes", "plasma-logo-dark.png"): "render: logo on abstract shapes",
    ("lxqt-themes", "plasma_arch.png"): "render: logo on a synthetic texture",
    ("lxqt-themes", "simple_blue_widescreen.png"): "render: gradient with curves",
    ("lxqt-themes", "triangles-logo.png"): "render: low-poly triangles with logo",
    ("lxqt-themes", "triangles.png"): "render: low-poly triangles",
    ("lxqt-themes", "waves-logo.png"): "render: gradient waves with logo",
    ("lxqt-themes", "waves-purple-logo.jpg"): "render: gradient waves with logo",
}
UNREVIEWED = "not reviewed (not in KEEP): excluded until someone looks at it"

# ---------------------------------------------------------------------------------------------
# Eet archives (Enlightenment .edj): directory scan with the stdlib only
# ---------------------------------------------------------------------------------------------

EET_MAGIC_FILE2 = 0x1EE70F42  # Eet file format version 2
_EET_HEADER = struct.Struct(">3i")  # magic, directory entries, dictionary entries
_EET_ENTRY = struct.Struct(">6i")  # data offset, size, data size, name offset, name size, flags


@dataclass(frozen=True)
class EetEntry:
    """One directory entry of an Eet file; `offset`/`size` address the stored (maybe packed) bytes."""

    name: str
    offset: int
    size: int
    data_size: int
    flags: int

    @property
    def compressed(self) -> bool:
        return bool(self.flags & 1)


def eet_directory(data: bytes) -> list[EetEntry]:
    """Parse the directory of an Eet v2 file (big-endian header, fixed 24-byte entries)."""
    if len(data) < _EET_HEADER.size:
        raise ImageReadError("not an Eet file: shorter than its header")
    magic, count, _ = _EET_HEADER.unpack_from(data, 0)
    if magic != EET_MAGIC_FILE2:
        raise ImageReadError(f"not an Eet v2 file (magic {magic:#010x})")
    if count < 0 or _EET_HEADER.size + count * _EET_ENTRY.size > len(data):
        raise ImageReadError(f"Eet directory of {count} entries does not fit the file")
    entries = []
    for i in range(count):
        offset, size, data_size, name_off, name_len, flags = _EET_ENTRY.unpack_from(
            data, _EET_HEADER.size + i * _EET_ENTRY.size
        )
        if min(offset, size, name_off, name_len) < 0 or max(
            offset + size, name_off + name_len
        ) > len(data):
            raise ImageReadError(f"Eet entry {i} points outside the file")
        name = data[name_off : name_off + name_len].split(b"\0", 1)[0].decode("utf-8", "replace")
        entries.append(EetEntry(name, offset, size, data_size, flags))
    return entries


_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def jpeg_dimensions(blob: bytes) -> tuple[int, int] | None:
    """(width, height) from the first SOF segment of a JPEG, or None if `blob` is not one."""
    if blob[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(blob):
        if blob[pos] != 0xFF:
            return None
        marker = blob[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        (length,) = struct.unpack_from(">H", blob, pos + 2)
        if marker in _SOF_MARKERS and pos + 9 <= len(blob):
            height, width = struct.unpack_from(">HH", blob, pos + 5)
            return width, height
        pos += 2 + length
    return None


def eet_photo(data: bytes) -> tuple[str, bytes]:
    """The largest embedded JPEG of an Eet archive (edje stores an image set, biggest = original):
    (entry name, JPEG bytes). Raises ImageReadError when the archive holds no plain JPEG."""
    best: tuple[int, str, bytes] | None = None
    for entry in eet_directory(data):
        if entry.compressed:
            continue
        blob = data[entry.offset : entry.offset + entry.size]
        dims = jpeg_dimensions(blob)
        if dims is not None and (best is None or dims[0] * dims[1] > best[0]):
            best = (dims[0] * dims[1], entry.name, blob)
    if best is None:
        raise ImageReadError("the Eet archive holds no embedded JPEG")
    return best[1], best[2]


# ---------------------------------------------------------------------------------------------
# JPEG quality, licences, split
# ---------------------------------------------------------------------------------------------

def parse_copyright(text: str) -> list[dict[str, str]]:
    """The `Files:` stanzas of a machine-readable debian/copyright (DEP-5), in file order:
    [{"files": "pat1 pat2", "copyright": ..., "license": first line}]."""
    stanzas = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        if "files" in fields:
            licence = fields.get("license", "").split(" ", 1)[0]
            stanzas.append(
                {
                    "files": fields["files"],
                    "copyright": fields.get("copyright", ""),
                    "license": licence,
                }
            )
    return stanzas


def _stanza_matches(pattern: str, installed: str) -> bool:
    if pattern == "*":
        return True
    if fnmatch.fnmatchcase(
        installed, "*/" + pattern
    ):  # source path is a suffix of the install path
        return True
    # a stanza naming one specific file in a source folder that is renamed on install (16.04/x.jpg)
    base = pattern.rsplit("/", 1)[-1]
    return (
        "/" in pattern
        and not any(c in base for c in "*?[")
        and base == installed.rsplit("/", 1)[-1]
    )


def licence_for(stanzas: list[dict[str, str]], installed: str) -> tuple[str, str]:
    """(license, copyright) of an installed path: the last matching stanza wins, as DEP-5 says."""
    found = ("unknown", "")
    for stanza in stanzas:
        if any(_stanza_matches(p, "/" + installed) for p in stanza["files"].split()):
            found = (stanza["license"], stanza["copyright"])
    return found


def choose_validation(names: Sequence[str], count: int) -> set[str]:
    """A fixed held-out subset: the `count` names with the smallest SHA-256 of the name (does not
    depend on list order, and adding a photo moves at most one)."""
    if count < 0 or count >= len(names):
        raise ConfigError(f"validation count must be in [0, {len(names)}), got {count}")
    ranked = sorted(names, key=lambda n: hashlib.sha256(n.encode()).hexdigest())
    return set(ranked[:count])


def prepare_photo(
    img: Image.Image, quality: int | None, max_quality: int
) -> tuple[np.ndarray, bool]:
    """Upright uint8 RGB array; halved (MATLAB bicubic) when it is a JPEG of quality <= max_quality."""
    img = ImageOps.exif_transpose(img)
    arr = np.asarray(img.convert("RGB"))
    if quality is not None and quality <= max_quality:
        return bicubic_downscale(arr, 2), True
    return np.ascontiguousarray(arr), False


# ---------------------------------------------------------------------------------------------
# Fetch: apt-get download + dpkg -x, then write PNGs and the manifest
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchConfig:
    """Where to put photos (`root`) and downloaded packages (`cache`); how many to hold out."""

    root: str = "data/photos"
    val: int = 5
    cache: str = "data/debs"
    max_quality: int = 90  # JPEGs at or below this estimated quality are halved first


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise TrainingError(f"{cmd[0]} not found: fetching photos needs a Debian system") from exc
    except subprocess.CalledProcessError as exc:
        raise TrainingError(f"{' '.join(cmd)} failed: {exc.stderr.strip()[-500:]}") from exc
    return done.stdout


def download_package(package: str, cache: Path, log: Callable[[str], None]) -> Path:
    """The .deb of `package` in `cache`, downloaded with apt-get unless already there."""
    policy = _run(["apt-cache", "policy", package])
    match = re.search(r"Candidate:\s*(\S+)", policy)
    if match is None or match.group(1) == "(none)":
        log("no apt candidate for " + package + ": running apt-get update")
        _run(["apt-get", "update"])
        policy = _run(["apt-cache", "policy", package])
        match = re.search(r"Candidate:\s*(\S+)", policy)
        if match is None or match.group(1) == "(none)":
            raise TrainingError(f"apt has no candidate for {package}")
    version = match.group(1)
    pattern = f"{package}_{version.split(':')[-1]}_*.deb"
    found = sorted(cache.glob(pattern))
    if not found:
        log(f"apt-get download {package} ({version})")
        _run(["apt-get", "download", f"{package}={version}"], cwd=cache)
        found = sorted(cache.glob(pattern))
        if not found:
            raise TrainingError(f"apt-get download left no {pattern} in {cache}")
    return found[0]


def unpack(deb: Path, cache: Path) -> tuple[Path, str]:
    """dpkg -x the package into cache/<deb stem>/ (once); returns (tree, package version)."""
    version = _run(["dpkg-deb", "-f", str(deb), "Version"]).strip()
    tree = cache / deb.stem
    marker = tree / ".unpacked"
    if not marker.exists():
        shutil.rmtree(tree, ignore_errors=True)
        tree.mkdir(parents=True)
        _run(["dpkg", "-x", str(deb), str(tree)])
        marker.touch()
    return tree, version


def load_candidate(path: Path) -> tuple[Image.Image, str]:
    """Decode a candidate; Eet archives yield their embedded JPEG. Returns (image, '#entry' or '')."""
    data = path.read_bytes()
    entry = ""
    if path.suffix == ".edj":
        entry, data = eet_photo(data)
        entry = "#" + entry
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (OSError, ValueError) as exc:
        raise ImageReadError(f"cannot decode {path}{entry}: {exc}") from exc
    return img, entry


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_photos(cfg: FetchConfig, log: Callable[[str], None] = lambda _: None) -> dict:
    """Download, review-filter, extract, downscale, split and write the photos; returns the
    manifest (also written to <root>/manifest.json)."""
    root, cache = Path(cfg.root), Path(cfg.cache)
    cache.mkdir(parents=True, exist_ok=True)
    photos: list[dict] = []
    excluded: list[dict] = []
    images: dict[str, np.ndarray] = {}
    seen: set[str] = set()
    versions: dict[str, str] = {}
    for source in SOURCES:
        deb = download_package(source.package, cache, log)
        tree, version = unpack(deb, cache)
        versions[source.package] = version
        copyright_file = tree / "usr/share/doc" / source.package / "copyright"
        stanzas = (
            parse_copyright(copyright_file.read_text("utf-8", "replace"))
            if copyright_file.exists()
            else []
        )
        folder = tree / source.folder
        if not folder.is_dir():
            raise TrainingError(f"{source.package} {version} has no {source.folder}")
        for path in sorted(folder.iterdir()):
            if not path.is_file() or path.suffix.lower() not in source.suffixes:
                continue
            rel = f"{source.folder}/{path.name}"
            key = (source.package, path.name)
            if key not in KEEP:
                reason = DROP.get(key, UNREVIEWED)
                excluded.append({"package": source.package, "path": rel, "reason": reason})
                continue
            raw_sha = _sha256(path.read_bytes())
            if raw_sha in seen:
                excluded.append({"package": source.package, "path": rel, "reason": "duplicate"})
                continue
            seen.add(raw_sha)
            img, entry = load_candidate(path)
            quality = estimate_jpeg_quality(img.quantization) if img.format == "JPEG" else None
            arr, halved = prepare_photo(img, quality, cfg.max_quality)
            name = f"{source.prefix}-{Path(path.name).stem}"
            licence, holder = licence_for(stanzas, rel)
            images[name] = arr
            photos.append(
                {
                    "name": name,
                    "package": source.package,
                    "version": version,
                    "source": rel + entry,
                    "source_sha256": raw_sha,
                    "description": KEEP[key],
                    "license": licence,
                    "copyright": holder,
                    "source_size": [img.width, img.height],
                    "jpeg_quality": quality,
                    "downscaled_x2": halved,
                    "size": [int(arr.shape[1]), int(arr.shape[0])],
                    "megapixels": round(arr.shape[0] * arr.shape[1] / 1e6, 3),
                }
            )
            log(f"{name}: {img.width}x{img.height} q={quality} -> {arr.shape[1]}x{arr.shape[0]}")
    if not photos:
        raise TrainingError("no photo was kept")
    val = choose_validation([p["name"] for p in photos], cfg.val)
    for split in ("train", "val"):
        (root / split).mkdir(parents=True, exist_ok=True)
        for old in (root / split).glob("*.png"):
            old.unlink()
    for photo in photos:
        photo["split"] = "val" if photo["name"] in val else "train"
        rel_out = f"{photo['split']}/{photo['name']}.png"
        buf = io.BytesIO()
        Image.fromarray(images.pop(photo["name"])).save(buf, "PNG", compress_level=3)
        (root / rel_out).write_bytes(buf.getvalue())
        photo["file"] = rel_out
        photo["sha256"] = _sha256(buf.getvalue())
    manifest = {
        "packages": versions,
        "counts": {s: sum(p["split"] == s for p in photos) for s in ("train", "val")},
        "megapixels": {
            s: round(sum(p["megapixels"] for p in photos if p["split"] == s), 2)
            for s in ("train", "val")
        },
        "photos": photos,
        "excluded": excluded,
    }
    tmp = root / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    tmp.replace(root / "manifest.json")
    return manifest
