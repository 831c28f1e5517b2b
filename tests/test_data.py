"""Training data: bicubic reference, Real-ESRGAN degradation, crop dataset, photo extraction."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from linearsr_cli.degrade import bicubic_downscale, gaussian_kernel, realistic_degrade, sinc_kernel
from linearsr_cli.errors import ConfigError, TrainingError
from linearsr_cli.jpeg_quality import estimate_jpeg_quality
from linearsr_cli.train.data import (
    DataConfig,
    PairDataset,
    crop_std,
    list_photos,
    read_rgb,
    validation_pairs,
)


def textured(h: int, w: int, seed: int) -> np.ndarray:
    """A uint8 RGB test photo: smooth gradients plus blurred noise (no flat areas)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([xx / w, yy / h, 0.5 + 0.4 * np.sin(xx / 7.0 + yy / 11.0)], axis=-1)
    noise = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 1.5)
    return np.clip(255 * (0.6 * base + 0.6 * (noise - 0.5) + 0.2), 0, 255).astype(np.uint8)


def write_rgb(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(img[:, :, ::-1]))


@pytest.fixture
def photo_root(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    for i, (h, w) in enumerate([(96, 80), (72, 120), (64, 64)]):
        write_rgb(root / "train" / f"t{i}.png", textured(h, w, i))
    write_rgb(root / "val" / "v0.png", textured(100, 90, 10))
    write_rgb(root / "val" / "v1.png", textured(60, 70, 11))
    return root


# --- bicubic -------------------------------------------------------------------------------


def test_bicubic_matches_pil_antialiased_bicubic_inside() -> None:
    rng = np.random.default_rng(0)
    img = rng.random((64, 48)).astype(np.float32)
    ours = bicubic_downscale(img, 4)
    ref = np.asarray(Image.fromarray(img, mode="F").resize((12, 16), Image.BICUBIC))
    assert ours.shape == (16, 12)
    # PIL renormalises truncated kernels at the border, MATLAB mirrors: compare the interior.
    np.testing.assert_allclose(ours[2:-2, 2:-2], ref[2:-2, 2:-2], atol=1e-5)


def test_bicubic_analytic_values() -> None:
    const = np.full((40, 36, 3), 0.3, dtype=np.float32)
    np.testing.assert_allclose(bicubic_downscale(const, 4), 0.3, atol=1e-6)
    ramp = np.tile(np.arange(48, dtype=np.float32), (16, 1))
    # a linear ramp is reproduced exactly: LR pixel j samples HR coordinate 4 j + 1.5
    want = np.broadcast_to(np.arange(2, 10) * 4 + 1.5, (4, 8))
    np.testing.assert_allclose(bicubic_downscale(ramp, 4)[:, 2:-2], want, atol=1e-4)


def test_bicubic_numpy_torch_uint8_agree() -> None:
    img = textured(32, 40, 3)
    as_u8 = bicubic_downscale(img, 4)
    as_f = bicubic_downscale(img.astype(np.float32) / 255.0, 4)
    as_t = bicubic_downscale(torch.from_numpy(img.transpose(2, 0, 1)).float()[None] / 255.0, 4)
    assert as_u8.dtype == np.uint8 and as_u8.shape == (8, 10, 3)
    assert as_t.shape == (1, 3, 8, 10)
    np.testing.assert_allclose(as_t[0].numpy().transpose(1, 2, 0), as_f, atol=1e-6)
    assert np.abs(as_u8.astype(np.float32) - np.clip(as_f * 255, 0, 255)).max() <= 0.5 + 1e-3


# --- realistic degradation -----------------------------------------------------------------


def test_kernels_are_normalised_and_symmetric() -> None:
    k = gaussian_kernel(21, 2.0, 2.0, 0.0)
    assert k.shape == (21, 21) and abs(k.sum() - 1) < 1e-5
    np.testing.assert_allclose(k, k.T, atol=1e-7)
    assert k.argmax() == 21 * 10 + 10
    aniso = gaussian_kernel(21, 3.0, 0.5, 0.0)
    assert aniso[10, :].sum() > aniso[:, 10].sum()  # wide along x
    s = sinc_kernel(13, np.pi / 3)
    assert abs(s.sum() - 1) < 1e-5 and s.argmax() == 13 * 6 + 6


def test_realistic_degrade_shape_range_determinism() -> None:
    hr = textured(72, 64, 5)
    outs = [realistic_degrade(hr, 4, np.random.default_rng(seed)) for seed in range(12)]
    for lr in outs:
        assert lr.shape == (18, 16, 3) and lr.dtype == np.float32
        assert lr.min() >= 0.0 and lr.max() <= 1.0
        np.testing.assert_allclose(lr * 255, np.rint(lr * 255), atol=1e-3)  # 8-bit output
    again = realistic_degrade(hr, 4, np.random.default_rng(3))
    np.testing.assert_array_equal(again, outs[3])
    assert not np.array_equal(outs[0], outs[1])
    as_float = realistic_degrade(hr.astype(np.float32) / 255.0, 4, np.random.default_rng(3))
    np.testing.assert_allclose(as_float, outs[3], atol=2 / 255)
    # the degradation damages the image more than plain bicubic does, on average
    bic = bicubic_downscale(hr.astype(np.float32) / 255.0, 4)
    assert np.mean([np.abs(lr - bic).mean() for lr in outs]) > 0.01


# --- dataset -------------------------------------------------------------------------------


def test_data_config_validation() -> None:
    with pytest.raises(ConfigError):
        DataConfig(crop=30, scale=4)
    with pytest.raises(ConfigError):
        DataConfig(degradation="jpeg")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        DataConfig(flat_std=-1.0)


def test_pair_dataset_shapes_ranges_and_determinism(photo_root: Path) -> None:
    cfg = DataConfig(root=str(photo_root), crop=32, degradation="mixed", seed=7, epoch_size=50)
    ds = PairDataset(cfg)
    assert len(ds) == 50 and ds.names == ["t0", "t1", "t2"]
    for i in range(10):
        item = ds[i]
        assert item["lr"].shape == (3, 8, 8) and item["hr"].shape == (3, 32, 32)
        assert item["lr"].dtype == torch.float32 and item["hr"].dtype == torch.float32
        for key in ("lr", "hr"):
            assert 0.0 <= float(item[key].min()) and float(item[key].max()) <= 1.0
        assert item["name"] in ds.names
    again = PairDataset(cfg)
    for i in (0, 3, 9):
        assert torch.equal(again[i]["lr"], ds[i]["lr"]) and torch.equal(again[i]["hr"], ds[i]["hr"])
    assert not torch.equal(ds[0]["hr"], ds[1]["hr"])
    other_seed = PairDataset(DataConfig(root=str(photo_root), crop=32, seed=8, epoch_size=50))
    assert not torch.equal(other_seed[0]["hr"], ds[0]["hr"])
    with pytest.raises(IndexError):
        ds[50]


def test_bicubic_pairs_are_bicubic_of_their_hr(photo_root: Path) -> None:
    """The LR is the bicubic downscale of the margin-padded crop, so it agrees with downscaling
    the HR crop itself away from the crop border."""
    ds = PairDataset(DataConfig(root=str(photo_root), crop=32, degradation="bicubic"))
    item = ds[4]
    direct = bicubic_downscale(item["hr"][None], 4)[0]
    assert (item["lr"] - direct)[:, 2:-2, 2:-2].abs().max() <= 0.5 / 255 + 1e-5


def test_flat_crops_are_dropped(tmp_path: Path) -> None:
    half = textured(64, 160, 1)
    half[:, :70] = 128  # a flat left part, wider than a padded crop (48 px)
    write_rgb(tmp_path / "p" / "train" / "half.png", half)
    cfg = DataConfig(root=str(tmp_path / "p"), crop=32, flat_std=0.02, epoch_size=40)
    ds = PairDataset(cfg)
    stds = [crop_std((ds[i]["hr"].numpy() * 255).round().astype(np.uint8)) for i in range(40)]
    assert min(stds) >= 0.02
    keep_all = PairDataset(
        DataConfig(root=str(tmp_path / "p"), crop=32, flat_std=0.0, epoch_size=40)
    )
    flat = [crop_std((keep_all[i]["hr"].numpy() * 255).round().astype(np.uint8)) for i in range(40)]
    assert min(flat) < 0.02  # without the filter some crops are flat


def test_small_photos_are_skipped_or_rejected(tmp_path: Path) -> None:
    write_rgb(tmp_path / "p" / "train" / "tiny.png", textured(20, 20, 0))
    with pytest.raises(TrainingError):
        PairDataset(DataConfig(root=str(tmp_path / "p"), crop=32))
    with pytest.raises(TrainingError):
        PairDataset(DataConfig(root=str(tmp_path / "missing"), crop=32))


def test_training_photos_are_the_readable_image_files(tmp_path: Path) -> None:
    """Every suffix imageio reads counts as a photo, nothing else does; a format OpenCV cannot
    decode (HEIC) is read through imageio."""
    from linearsr_cli.imageio import heif_available

    img = textured(16, 24, 3)
    for name, fmt in (("a.png", "PNG"), ("b.webp", "WEBP"), ("c.bmp", "BMP")):
        Image.fromarray(img).save(tmp_path / name, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    (tmp_path / "manifest.json").write_text("{}")
    (tmp_path / "a.png.tags").write_text("cat")
    assert [p.name for p in list_photos(tmp_path)] == ["a.png", "b.webp", "c.bmp"]
    for p in list_photos(tmp_path):
        np.testing.assert_array_equal(read_rgb(p), img)
    if heif_available():
        Image.fromarray(img).save(tmp_path / "d.heic", format="HEIF", quality=95)
        heic = read_rgb(tmp_path / "d.heic")
        assert heic.shape == img.shape and heic.dtype == np.uint8
        assert np.abs(heic.astype(int) - img).mean() < 10
    (tmp_path / "e.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(TrainingError, match="cannot decode training image"):
        read_rgb(tmp_path / "e.jpg")


def test_validation_pairs_fixed_centre_crops(photo_root: Path) -> None:
    cfg = DataConfig(root=str(photo_root), crop=32)
    pairs = validation_pairs(cfg, size=64)
    assert [name for name, _, _ in pairs] == ["v0", "v1"]
    name, lr, hr = pairs[0]
    assert hr.shape == (3, 64, 64) and lr.shape == (3, 16, 16)
    assert pairs[1][2].shape == (3, 44, 44)  # 60 - 2 * 8 = 44, a multiple of 4
    # the LR crop is exactly the matching region of the whole photo's bicubic LR
    photo = cv2.imread(str(photo_root / "val" / "v0.png"))[:, :, ::-1].astype(np.float32) / 255.0
    full = np.rint(bicubic_downscale(photo, 4) * 255) / 255  # (25, 22, 3)
    y0, x0 = 4, 3  # centre (18, 13) snapped down to the LR grid: HR (16, 12)
    np.testing.assert_allclose(
        lr.numpy().transpose(1, 2, 0), full[y0 : y0 + 16, x0 : x0 + 16], atol=1.01 / 255
    )
    ref_hr = photo[16:80, 12:76]
    np.testing.assert_allclose(hr.numpy().transpose(1, 2, 0), ref_hr, atol=1e-6)
    again = validation_pairs(cfg, size=64, degradation="realistic")
    assert torch.equal(again[0][1], validation_pairs(cfg, size=64, degradation="realistic")[0][1])


# --- photos: Eet, JPEG quality, licences, split, manifest ------------------------------------

import io  # noqa: E402
import json  # noqa: E402
import struct  # noqa: E402

from linearsr_cli.data import photos  # noqa: E402
from linearsr_cli.errors import ImageReadError  # noqa: E402


def jpeg_bytes(w: int, h: int, quality: int = 95, seed: int = 0, **save: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(textured(h, w, w + h + seed)).save(buf, "JPEG", quality=quality, **save)
    return buf.getvalue()


def write_eet(entries: list[tuple[str, bytes, int]]) -> bytes:
    """A minimal Eet v2 file: header, directory, names, then the payloads (flags as given)."""
    header = struct.pack(">3i", photos.EET_MAGIC_FILE2, len(entries), 0)
    names = b"".join(name.encode() + b"\0" for name, _, _ in entries)
    name_start = len(header) + 24 * len(entries)
    data_start = name_start + len(names)
    directory, name_off, data_off = b"", name_start, data_start
    for name, payload, flags in entries:
        n = len(name) + 1
        directory += struct.pack(">6i", data_off, len(payload), len(payload), name_off, n, flags)
        name_off += n
        data_off += len(payload)
    return header + directory + names + b"".join(p for _, p, _ in entries)


def test_eet_extraction_picks_the_largest_plain_jpeg() -> None:
    small, big = jpeg_bytes(40, 30), jpeg_bytes(64, 48, progressive=True)
    archive = write_eet(
        [
            ("edje/images/1", small, 0),
            ("edje/file", b"\x78\x9c packed edje data", 1),
            ("edje/images/0", big, 0),
            ("edje/images/2", b"\xff\xd8 but compressed", 1),
            ("edje/images/3", b"\xde\xad\xbe\xef raw argb", 0),
        ]
    )
    entries = photos.eet_directory(archive)
    assert [e.name for e in entries] == [
        "edje/images/1",
        "edje/file",
        "edje/images/0",
        "edje/images/2",
        "edje/images/3",
    ]
    assert entries[1].compressed and not entries[0].compressed
    assert photos.jpeg_dimensions(big) == (64, 48) and photos.jpeg_dimensions(b"nope") is None
    name, blob = photos.eet_photo(archive)
    assert name == "edje/images/0" and blob == big
    assert Image.open(io.BytesIO(blob)).size == (64, 48)


def test_eet_rejects_bad_files() -> None:
    good = write_eet([("edje/images/0", jpeg_bytes(16, 16), 0)])
    with pytest.raises(ImageReadError):
        photos.eet_directory(b"\x00\x01" + good[2:])  # wrong magic
    with pytest.raises(ImageReadError):
        photos.eet_directory(good[:30])  # directory cut off
    with pytest.raises(ImageReadError):
        photos.eet_directory(good[: len(good) - 10])  # payload cut off
    with pytest.raises(ImageReadError):
        photos.eet_photo(write_eet([("edje/images/0", b"\x89PNG not a jpeg", 0)]))


@pytest.mark.parametrize("quality", [30, 50, 75, 85, 90, 95])
def test_jpeg_quality_estimate_recovers_libjpeg_setting(quality: int) -> None:
    img = Image.open(io.BytesIO(jpeg_bytes(32, 24, quality)))
    assert estimate_jpeg_quality(img.quantization) == quality


def test_prepare_photo_halves_low_quality_jpegs_and_undoes_exif_rotation() -> None:
    low = Image.open(io.BytesIO(jpeg_bytes(64, 40, 85)))
    arr, halved = photos.prepare_photo(low, 85, 90)
    assert halved and arr.shape == (20, 32, 3) and arr.dtype == np.uint8
    high = Image.open(io.BytesIO(jpeg_bytes(64, 40, 95)))
    arr, halved = photos.prepare_photo(high, 95, 90)
    assert not halved and arr.shape == (40, 64, 3)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buf = io.BytesIO()
    Image.fromarray(textured(40, 64, 0)).save(buf, "JPEG", quality=95, exif=exif)
    arr, _ = photos.prepare_photo(Image.open(io.BytesIO(buf.getvalue())), 95, 90)
    assert arr.shape == (64, 40, 3)


COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: 2010 The Team
License: LGPL-2.1+

Files: nature/Aqua.jpg
       nature/LadyBird.jpg
Copyright: 2008, Someone
License: GPL-2+
Comment: see AUTHORS

Files: 16.04/Bridge_by_X.jpg
Copyright: 2018, X
License: CC-BY-SA-4.0

Files: debian/*
Copyright: 2014 Packager
License: GPL-2+

License: GPL-2+
 long text that is not a stanza of its own
"""


def test_licence_lookup_follows_dep5() -> None:
    stanzas = photos.parse_copyright(COPYRIGHT)
    assert [s["license"] for s in stanzas] == ["LGPL-2.1+", "GPL-2+", "CC-BY-SA-4.0", "GPL-2+"]
    lookup = photos.licence_for
    assert lookup(stanzas, "usr/share/backgrounds/mate/nature/LadyBird.jpg") == (
        "GPL-2+",
        "2008, Someone",
    )
    assert lookup(stanzas, "usr/share/backgrounds/Bridge_by_X.jpg")[0] == "CC-BY-SA-4.0"
    assert lookup(stanzas, "usr/share/lxqt/wallpapers/fog.jpg") == ("LGPL-2.1+", "2010 The Team")
    assert lookup([], "anything.png") == ("unknown", "")


def test_validation_choice_is_deterministic_and_order_free() -> None:
    names = [f"photo-{i}" for i in range(20)]
    val = photos.choose_validation(names, 5)
    assert len(val) == 5 and val <= set(names)
    assert photos.choose_validation(list(reversed(names)), 5) == val
    assert photos.choose_validation(names + ["extra"], 5) - val <= {"extra"}
    with pytest.raises(ConfigError):
        photos.choose_validation(names, 20)


def test_review_lists_are_consistent() -> None:
    assert not set(photos.KEEP) & set(photos.DROP)
    assert all(reason.strip() for reason in photos.DROP.values())
    assert {pkg for pkg, _ in photos.KEEP} == set(photos.PACKAGES)
    assert 45 <= len(photos.KEEP) <= 55


def fake_tree(base: Path, source: photos.Source) -> Path:
    """A package tree with the real folder layout: kept, dropped and unknown candidates."""
    tree = base / source.package
    folder = tree / source.folder
    folder.mkdir(parents=True)
    kept = sorted(name for pkg, name in photos.KEEP if pkg == source.package)[:3]
    for i, name in enumerate(kept, start=10 * photos.SOURCES.index(source)):
        if name.endswith(".edj"):
            big = jpeg_bytes(96, 80, 98, seed=i)
            (folder / name).write_bytes(
                write_eet([("edje/images/1", jpeg_bytes(48, 40), 0), ("edje/images/0", big, 0)])
            )
        elif name.endswith(".png"):
            Image.fromarray(textured(70, 90, i)).save(folder / name)
        else:
            (folder / name).write_bytes(jpeg_bytes(100, 72, 85 if i % 2 else 95, seed=i))
    dropped = [name for pkg, name in photos.DROP if pkg == source.package][:1]
    for name in dropped + ["zz-unknown.png"]:
        Image.fromarray(textured(40, 40, 9)).save(
            folder / name, "PNG" if name.endswith(".png") else "JPEG"
        )
    doc = tree / "usr/share/doc" / source.package
    doc.mkdir(parents=True)
    (doc / "copyright").write_text("Files: *\nCopyright: 2020 Test\nLicense: CC0-1.0\n")
    return tree


def test_fetch_writes_photos_and_a_deterministic_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trees = {s.package: fake_tree(tmp_path / "debs", s) for s in photos.SOURCES}
    monkeypatch.setattr(photos, "download_package", lambda pkg, cache, log: Path(pkg))
    monkeypatch.setattr(photos, "unpack", lambda deb, cache: (trees[str(deb)], "1.0-1"))
    cfg = photos.FetchConfig(root=str(tmp_path / "photos"), val=2, cache=str(tmp_path / "cache"))
    first = photos.fetch_photos(cfg)
    second = photos.fetch_photos(cfg)
    assert first == second
    on_disk = json.loads((tmp_path / "photos" / "manifest.json").read_text())
    assert on_disk == first
    assert first["counts"] == {"train": 10, "val": 2}
    for entry in first["photos"]:
        path = tmp_path / "photos" / entry["file"]
        assert path.is_file() and entry["split"] in entry["file"]
        assert photos._sha256(path.read_bytes()) == entry["sha256"]
        assert entry["license"] == "CC0-1.0" and entry["version"] == "1.0-1"
        w, h = Image.open(path).size
        assert [w, h] == entry["size"]
        if entry["source"].endswith(".jpg"):
            assert entry["downscaled_x2"] == (entry["jpeg_quality"] <= 90)
    edj = [e for e in first["photos"] if e["package"] == "enlightenment-data"]
    assert edj and all(
        e["source"].endswith("#edje/images/0") and e["size"] == [96, 80] for e in edj
    )
    reasons = {e["path"].rsplit("/", 1)[-1]: e["reason"] for e in first["excluded"]}
    assert reasons["zz-unknown.png"] == photos.UNREVIEWED
    assert any(r.startswith(("render", "texture")) for r in reasons.values())
    ds = PairDataset(DataConfig(root=cfg.root, crop=16))  # the loader reads what fetch wrote
    assert len(ds.names) == 10


def test_cli_data_fetch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from linearsr_cli.cli import app

    trees = {s.package: fake_tree(tmp_path / "debs", s) for s in photos.SOURCES}
    monkeypatch.setattr(photos, "download_package", lambda pkg, cache, log: Path(pkg))
    monkeypatch.setattr(photos, "unpack", lambda deb, cache: (trees[str(deb)], "1.0-1"))
    root = tmp_path / "out"
    result = CliRunner().invoke(app, ["data", "fetch", "--root", str(root), "--val", "3", "-q"])
    assert result.exit_code == 0, result.output
    assert "train: 9 photos" in result.output and "val: 3 photos" in result.output
    assert len(list((root / "val").glob("*.png"))) == 3
    bad = CliRunner().invoke(app, ["data", "fetch", "--root", str(root), "--val", "50", "-q"])
    assert bad.exit_code == 1 and "validation count" in bad.output
