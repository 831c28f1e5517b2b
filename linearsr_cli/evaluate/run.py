"""`linearsr eval`: every method on the same LR inputs, scored side by side.

For each HR image (a folder, recursive): the LR input is read from the `--lr` folder (same
relative path and stem, any image suffix, optionally with an `x4` suffix on the stem) or made
here, MATLAB-style antialiased bicubic or the Real-ESRGAN-style realistic degradation with a
seed fixed per image. HR is cropped to a multiple of the scale first. Every method upscales the
same LR; the output is scored with PSNR and SSIM on Y (border cropped) and the full-reference
perceptual distance ST-LPIPS (lpips.py) against HR, and with the no-reference NIQE and BRISQUE.
Methods:

    bicubic       PyTorch bicubic (a = -0.75), the upsample LinearSR predicts a residual over
    span          SPAN x4 (x2 at --scale 2) through ncnn on the CPU          (peers.py)
    realesrgan    Real-ESRGAN x4plus through ncnn on the CPU
    clearreality  ClearReality4x (SPAN architecture, real-world) through ncnn on the CPU
    spankendata   4xSPANkendata (SPAN architecture, real-world) through ncnn on the CPU
    linearsr-1   LinearSR, 1-NFE (fidelity preset)       through engine.upscaler.Upscaler
    linearsr-ms  LinearSR, multi-step (perceptual preset, or --steps/--solver)
At --scale 2 the x4-only peers run x4 and are resized down with Lanczos, as their users do;
LinearSR uses the shipped x2 weights (or, given --weights of another scale, that model's passes
resampled to the scale, as `upscale --outscale` does).

A method that cannot run here (peer not installed, no weights shipped) is reported as
unavailable with the reason; a failure on one image is recorded and the rest goes on.
"""

from __future__ import annotations

import hashlib
import math
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from linearsr_cli.config import PRESETS, SamplerConfig, TileConfig
from linearsr_cli.degrade import bicubic_downscale, jpeg_roundtrip, realistic_degrade
from linearsr_cli.engine.pipeline import ImageTags, TagResolver
from linearsr_cli.engine.resize import SizeRequest
from linearsr_cli.engine.route import check_input
from linearsr_cli.errors import ConfigError, ImageReadError, LinearSRError, WeightsError
from linearsr_cli.evaluate.grid import comparison_grid, crop, nearest_up, pick_crop, write_png
from linearsr_cli.evaluate.metrics import psnr_y, ssim_y
from linearsr_cli.evaluate.noref import NOREF_METRICS, NoReference
from linearsr_cli.evaluate.peers import PEER_NAMES, make_peer
from linearsr_cli.imageio import READABLE_SUFFIXES, read_image, read_jpeg_quality
from linearsr_cli.nn.dit import bicubic_upsample
from linearsr_cli.perceptual import LpipsScorer
from linearsr_cli.tag.config import DEFAULT_TAGS, TagConfig

METHODS = ("bicubic", "span", "realesrgan", "clearreality", "spankendata", "linearsr-1", "linearsr-ms")
DEGRADATIONS = ("bicubic", "realistic", "mixed")  # mixed: every image in each of MIXED_KINDS
# --degradation mixed: each image bicubic and realistic, each as a lossless file and saved as a JPEG
# (of the quality in SAVED_QUALITY, which the router reads as the file's) the way photos meet us
MIXED_KINDS = ("bicubic", "realistic", "bicubic.jpg", "realistic.jpg")
SAVED_QUALITY = {"bicubic": 90, "realistic": 75}


def saved_quality(kind: str | None) -> int | None:
    """The JPEG quality a mixed-set kind was saved at ("realistic.jpg" -> 75), None if lossless."""
    if kind is None or not kind.endswith(".jpg"):
        return None
    return SAVED_QUALITY[kind.removesuffix(".jpg")]


TAG_MODES = ("auto", "off")
TAG_KINDS = ("tags", "visual")  # visual: the TAG ablation's pooled-feature token (train --tag-kind)
METRICS = ("psnr", "ssim", "lpips", *NOREF_METRICS)

Progress = Callable[[str], None] | None


@dataclass(frozen=True)
class EvalConfig:
    """One evaluation run. `weights` None = $LINEARSR_WEIGHTS or the shipped file (when neither
    exists the LinearSR methods are reported unavailable; a named file that is bad is an error)."""

    hr_dir: Path
    lr_dir: Path | None = None
    weights: Path | None = None
    methods: tuple[str, ...] = METHODS
    scale: int = 4
    degradation: str = "bicubic"
    seed: int = 0
    border: int = 4
    multistep: SamplerConfig = PRESETS["perceptual"]
    noref: tuple[str, ...] = NOREF_METRICS
    lpips: bool = True
    metric_data: Path | None = None
    device: str = "auto"
    dtype: str = "auto"
    tags: str = DEFAULT_TAGS  # auto (the tagger on the LR image) | off
    tag_kind: str = "tags"  # what guides LinearSR when tags are on: tags | visual
    input: str = "auto"  # --input: which prior serves LinearSR: auto | clean | real
    tta: bool = False  # LinearSR with the 8-transform self-ensemble (upscale --tta)
    tiles: TileConfig = TileConfig()
    limit: int = 0
    grid_images: int = 4
    grid_crop: int = 128

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ConfigError(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
        if len(set(self.methods)) != len(self.methods):
            raise ConfigError(f"methods listed twice: {', '.join(self.methods)}")
        if self.degradation not in DEGRADATIONS:
            raise ConfigError(f"degradation must be one of {', '.join(DEGRADATIONS)}")
        if self.tags == "visual":
            raise ConfigError("--tags is auto or off; the ablation's visual token is --tag-kind visual")
        if self.tags not in TAG_MODES:
            raise ConfigError(f"tags must be one of {', '.join(TAG_MODES)}")
        if self.tag_kind not in TAG_KINDS or (self.tag_kind == "visual" and self.tags == "off"):
            raise ConfigError(f"--tag-kind must be tags or visual (with tags on), got {self.tag_kind!r} with "
                              f"--tags {self.tags}")
        check_input(self.input)
        bad = [m for m in self.noref if m not in NOREF_METRICS]
        if bad:
            raise ConfigError(f"unknown no-reference metrics {bad}; choose from {NOREF_METRICS}")
        if self.scale < 1 or self.border < 0 or self.limit < 0:
            raise ConfigError("scale must be >= 1, border and limit >= 0")
        if self.grid_crop < 8 or self.grid_images < 1:
            raise ConfigError("grid crop must be >= 8 pixels and grid images >= 1")


@dataclass
class ImageResult:
    name: str
    hr_size: tuple[int, int]
    lr_size: tuple[int, int]
    results: dict[str, dict[str, float | None]] = field(default_factory=dict)
    tags: list[str] | None = None  # TAG tags that guided LinearSR (None: tags off / not run)
    input_kind: str | None = None  # the prior that served LinearSR (None: no prior / not run)
    input_why: str | None = None  # why (--input, or the evidence --input auto saw)


@dataclass
class EvalReport:
    """Everything a run measured; `to_dict` is the --json schema."""

    config: dict[str, Any]
    methods: dict[str, dict[str, Any]]
    metrics: dict[str, dict[str, Any]]
    images: list[ImageResult] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    grid_rows: list[list[np.ndarray]] = field(default_factory=list, repr=False)
    grid_labels: list[str] = field(default_factory=list)

    def ran(self) -> list[str]:
        return [m for m, v in self.methods.items() if v["available"]]

    def mean(self) -> dict[str, dict[str, float | None]]:
        """Per method and metric, the mean over the images where the value exists."""
        out: dict[str, dict[str, float | None]] = {}
        for method in self.ran():
            row: dict[str, float | None] = {}
            for key in (*METRICS, "seconds"):
                vals = [
                    v
                    for img in self.images
                    if (v := img.results.get(method, {}).get(key)) is not None
                ]
                row[key] = float(np.mean(vals)) if vals else None
            row["images"] = float(sum(method in img.results for img in self.images))
            out[method] = row
        return out

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(
            {
                "config": self.config,
                "methods": self.methods,
                "metrics": self.metrics,
                "images": [asdict(img) for img in self.images],
                "mean": self.mean(),
                "errors": self.errors,
            }
        )


def _json_safe(value: Any) -> Any:
    """Paths to strings, tuples to lists, non-finite floats (PSNR of identical images) to None."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def list_images(root: Path) -> list[Path]:
    """Image files under `root` (or `root` itself), sorted by relative path."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise ConfigError(f"{root}: no such file or folder")
    return sorted(
        p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in READABLE_SUFFIXES
    )


def find_lr(lr_dir: Path, rel: Path, scale: int) -> Path | None:
    """The LR file for HR `rel`: same folder and stem (or stem + 'x4'), any image suffix."""
    folder = lr_dir / rel.parent
    if not folder.is_dir():
        return None
    stems = {rel.stem, f"{rel.stem}x{scale}"}
    for cand in sorted(folder.iterdir()):
        if cand.is_file() and cand.stem in stems and cand.suffix.lower() in READABLE_SUFFIXES:
            return cand
    return None


def lr_file_quality(lr_dir: Path, rel: Path, scale: int) -> int | None:
    """The JPEG quality that HR `rel`'s LR file in `lr_dir` says (what `upscale --input auto` reads
    from a file), None for a lossless file or none."""
    path = find_lr(lr_dir, rel, scale)
    return None if path is None else read_jpeg_quality(path)  # the header only: load_pair read the pixels


def image_seed(seed: int, rel: str) -> int:
    """A per-image seed from the run seed and the relative path: stable when images are added."""
    return (int(seed) * 1_000_003 + zlib.crc32(rel.encode("utf-8"))) % (2**63)


def make_lr(hr: np.ndarray, cfg: EvalConfig, rel: str, kind: str | None = None) -> np.ndarray:
    """The LR input for a (3, H, W) HR image with H, W multiples of the scale, 8-bit quantised;
    `kind` bicubic|realistic, or one of them saved as a JPEG (MIXED_KINDS; default: the config's
    degradation)."""
    kind = kind or cfg.degradation
    if kind.removesuffix(".jpg") == "bicubic":
        lr = np.asarray(bicubic_downscale(torch.from_numpy(hr), cfg.scale))  # (3, H/s, W/s)
    else:
        rng = np.random.default_rng(image_seed(cfg.seed, rel))
        lr = realistic_degrade(hr.transpose(1, 2, 0), cfg.scale, rng).transpose(2, 0, 1)
    lr = np.round(np.clip(lr, 0.0, 1.0) * 255.0) / 255.0
    quality = saved_quality(kind)
    if quality is not None:
        lr = jpeg_roundtrip(np.ascontiguousarray(lr.transpose(1, 2, 0)), quality).transpose(2, 0, 1)
    return np.ascontiguousarray(lr, dtype=np.float32)


def load_pair(hr_path: Path, rel: Path, cfg: EvalConfig, kind: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(HR, LR) as (3, H, W) and (3, H/s, W/s) float32 in [0, 1], the LR made with degradation
    `kind` (default: the config's) unless read from lr_dir; raises ImageReadError."""
    s = cfg.scale
    hr = read_image(hr_path).rgb.numpy()
    if cfg.lr_dir is None:
        h, w = (hr.shape[1] // s) * s, (hr.shape[2] // s) * s
        if h == 0 or w == 0:
            raise ImageReadError(f"smaller than the scale ({hr.shape[1]}x{hr.shape[2]})")
        hr = np.ascontiguousarray(hr[:, :h, :w])
        return hr, make_lr(hr, cfg, rel.as_posix(), kind)
    lr_path = find_lr(cfg.lr_dir, rel, s)
    if lr_path is None:
        raise ImageReadError(f"no LR file for it in {cfg.lr_dir}")
    lr = read_image(lr_path).rgb.numpy()
    h, w = lr.shape[1] * s, lr.shape[2] * s
    if hr.shape[1] < h or hr.shape[2] < w or hr.shape[1] - h >= s or hr.shape[2] - w >= s:
        raise ImageReadError(
            f"HR {hr.shape[1]}x{hr.shape[2]} does not match LR {lr.shape[1]}x{lr.shape[2]} at x{s}"
        )
    return np.ascontiguousarray(hr[:, :h, :w]), lr


class MethodRunner:
    """The methods of one run, loaded once: name -> upscale(lr (3, h, w)) -> (3, s h, s w)."""

    def __init__(self, cfg: EvalConfig) -> None:
        self.cfg = cfg
        self.status: dict[str, dict[str, Any]] = {}
        self.fns: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
        self._upscaler = None
        self._models: dict[int, Any] = {}
        self._size = SizeRequest()
        self._passes: tuple[int, ...] = (cfg.scale,)
        self._tags: TagResolver | None = None
        self._tags_key: bytes | None = None
        self._image_tags: ImageTags | None = None
        self.last_tags: list[str] | None = None  # the tagger's tags for the latest image
        self.last_input: str | None = None  # the prior input chosen for the latest image
        self.jpeg_quality: int | None = None  # the quality the latest image's file was saved at (the router reads it)
        self.last_why: str | None = None
        for method in cfg.methods:
            self._prepare(method)

    def _prepare(self, method: str) -> None:
        cfg = self.cfg
        if method == "bicubic":
            self._ok(method, "bicubic upsample (PyTorch, a = -0.75)", self._bicubic)
        elif method in PEER_NAMES:
            try:
                peer = make_peer(method, cfg.scale)
            except ConfigError as exc:
                self._off(method, str(exc))
                return
            if not peer.available():
                self._off(method, peer.unavailable_reason())
            else:
                self._ok(method, peer.description, peer.upscale)
        else:
            try:
                upscaler = self._load_upscaler()
            except WeightsError as exc:
                if cfg.weights is not None:
                    raise
                self._off(method, str(exc))
                return
            sampler = (
                SamplerConfig(steps=1, seed=cfg.seed) if method == "linearsr-1" else cfg.multistep
            )
            what = "1-NFE" if sampler.steps == 1 else f"{sampler.steps} steps {sampler.solver}"
            if cfg.tta:
                what += ", TTA x8"
            if self._passes != (cfg.scale,):  # as `upscale --outscale`: native passes, then resample
                what += f", x{' then x'.join(map(str, self._passes))} resampled to x{cfg.scale}"
            tags = "visual" if cfg.tag_kind == "visual" else cfg.tags
            self._ok(
                method,
                f"LinearSR {what}, {upscaler.plan.describe()}, tags {tags}, input {cfg.input}",
                lambda lr, s=sampler: self._linearsr(lr, s),
            )

    def _ok(self, method: str, description: str, fn: Callable[[np.ndarray], np.ndarray]) -> None:
        self.status[method] = {"available": True, "description": description}
        self.fns[method] = fn

    def _off(self, method: str, reason: str) -> None:
        self.status[method] = {"available": False, "reason": reason}

    def _bicubic(self, lr: np.ndarray) -> np.ndarray:
        up = bicubic_upsample(torch.from_numpy(lr)[None], self.cfg.scale)  # (1, 3, sH, sW)
        return up[0].clamp(0.0, 1.0).numpy()

    def _load_upscaler(self):
        if self._upscaler is None:
            from linearsr_cli.engine.pipeline import load_models, model_files, plan_size

            # a given file of another scale runs and is resampled to --scale, as `upscale --outscale`
            infos = model_files(self.cfg.weights, self.cfg.scale, any_scale=True)
            self._models = load_models(infos, device=self.cfg.device, dtype=self.cfg.dtype, tiles=self.cfg.tiles)
            self._upscaler = next(iter(self._models.values()))
            if self._upscaler.scale != self.cfg.scale:  # as `upscale --outscale`: native passes, then resample
                self._size = SizeRequest(outscale=float(self.cfg.scale))
            self._passes = plan_size(self._models, self._size, 1, 1)[0]
        return self._upscaler

    def _tag_resolver(self) -> TagResolver:
        """The tagger's tags on the LR itself (--tags auto), or, for weights trained with it, the
        tagger's pooled feature as one token (visual); None of either for --tags off."""
        if self._tags is None:
            cfg = TagConfig(enabled=self.cfg.tags != "off")
            self._tags = TagResolver(cfg, self._upscaler.plan.device, visual=self.cfg.tag_kind == "visual")
        return self._tags

    def _linearsr(self, lr: np.ndarray, sampler: SamplerConfig) -> np.ndarray:
        from linearsr_cli.engine.pipeline import upscale_to_size

        lr_t = torch.from_numpy(lr)
        key = hashlib.sha1(lr.tobytes()).digest() + str(lr.shape).encode()
        if key != self._tags_key:  # the image's tags, once for all its LinearSR methods
            self._tags_key, self._image_tags = key, self._tag_resolver().for_image(None, lr_t)
        tags = self._image_tags
        done = upscale_to_size(self._models, lr_t, None, sampler, size=self._size, tags=tags,
                               input=self.cfg.input, jpeg_quality=self.jpeg_quality, tta=self.cfg.tta)
        if tags is not None and tags.source is not None:
            self.last_tags = list(tags.tags)
        self.last_input, self.last_why = done.route.input, f"{done.route.why}; prior {done.route.prior}"
        return done.rgb.numpy()


def score(
    sr: np.ndarray, hr: np.ndarray, noref: NoReference, border: int, lpips: LpipsScorer | None = None
) -> dict[str, float | None]:
    """PSNR/SSIM on Y against HR with `border` cropped, ST-LPIPS against HR (when loaded), and
    the no-reference scores of `sr`."""
    out: dict[str, float | None] = {"psnr": psnr_y(sr, hr, border), "ssim": ssim_y(sr, hr, border)}
    if lpips is not None:
        out["lpips"] = lpips(sr, hr)
    out.update(noref.score(sr))
    return out


def run_eval(cfg: EvalConfig, progress: Progress = None) -> EvalReport:
    """Evaluate every available method on every image; see the module docstring."""
    paths = list_images(cfg.hr_dir)
    if cfg.limit:
        paths = paths[: cfg.limit]
    if not paths:
        raise ConfigError(f"{cfg.hr_dir}: no images found")
    runner = MethodRunner(cfg)
    noref = NoReference.load(cfg.metric_data, cfg.noref)
    metrics: dict[str, dict[str, Any]] = {m: {"available": True} for m in ("psnr", "ssim")}
    lpips = None
    if cfg.lpips:
        try:
            lpips = LpipsScorer()
            metrics["lpips"] = {"available": True, "description": "ST-LPIPS AlexNet (Ghildyal & Liu 2022)"}
        except ConfigError as exc:
            metrics["lpips"] = {"available": False, "reason": str(exc)}
    for name in cfg.noref:
        reason = noref.unavailable.get(name)
        metrics[name] = {"available": True} if reason is None else {"available": False, "reason": reason}
    report = EvalReport(config=asdict(cfg), methods=runner.status, metrics=metrics)
    ran = report.ran()
    report.grid_labels = [f"LR x{cfg.scale}", *ran, "HR"]
    root = cfg.hr_dir if cfg.hr_dir.is_dir() else cfg.hr_dir.parent
    kinds = MIXED_KINDS if cfg.degradation == "mixed" and cfg.lr_dir is None else (None,)
    items = [(path, kind) for path in paths for kind in kinds]
    for index, (path, kind) in enumerate(items):
        rel = path.relative_to(root)
        name = rel.as_posix() + (f"#{kind}" if kind else "")
        try:
            hr, lr = load_pair(path, rel, cfg, kind)
        except LinearSRError as exc:
            report.errors.append({"image": name, "method": "", "error": str(exc)})
            continue
        item = ImageResult(name, (hr.shape[1], hr.shape[2]), (lr.shape[1], lr.shape[2]))
        runner.last_tags = runner.last_input = runner.last_why = None
        runner.jpeg_quality = saved_quality(kind) if cfg.lr_dir is None else lr_file_quality(cfg.lr_dir, rel, cfg.scale)
        want_crop = len(report.grid_rows) < cfg.grid_images
        if want_crop:
            size = min(cfg.grid_crop, hr.shape[1], hr.shape[2]) // cfg.scale * cfg.scale
            cy, cx = pick_crop(hr, size, align=cfg.scale)
            lr_crop = crop(lr, cy // cfg.scale, cx // cfg.scale, size // cfg.scale)
            row = [nearest_up(lr_crop, cfg.scale)]
        for method in ran:
            if progress is not None:
                progress(f"[{index + 1}/{len(items)}] {name}: {method}")
            start = time.perf_counter()
            try:
                sr = runner.fns[method](lr)
            except LinearSRError as exc:
                report.errors.append({"image": name, "method": method, "error": str(exc)})
                if want_crop:
                    row.append(np.zeros((3, size, size), np.float32))
                continue
            seconds = time.perf_counter() - start
            if sr.shape != hr.shape:
                raise ConfigError(f"{method} returned {sr.shape} for HR {hr.shape}")
            item.results[method] = {**score(sr, hr, noref, cfg.border, lpips), "seconds": seconds}
            if want_crop:
                row.append(crop(sr, cy, cx, size))
        if want_crop:
            row.append(crop(hr, cy, cx, size))
            report.grid_rows.append(_fit_cells(row, cfg.grid_crop))
        item.tags, item.input_kind, item.input_why = runner.last_tags, runner.last_input, runner.last_why
        report.images.append(item)
    return report


def _fit_cells(row: list[np.ndarray], cell: int) -> list[np.ndarray]:
    """Pad small crops (images smaller than the crop size) to `cell` so every row lines up."""
    return [crop(c, 0, 0, cell) if c.shape[-1] != cell else c for c in row]


def write_grid(report: EvalReport, path: Path) -> Path:
    """The labelled crop grid (LR | methods | HR) of the first images, as a PNG."""
    if not report.grid_rows:
        raise ConfigError("no image was evaluated, so there is nothing to show in a grid")
    return write_png(path, comparison_grid(report.grid_rows, report.grid_labels))


def _fmt(value: float | None, digits: int) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:.{digits}f}"


def format_table(report: EvalReport, per_image: bool = True) -> str:
    """A plain-text table: per image and method, then the means; unavailable items explained."""
    cols = [("psnr", "PSNR", 2), ("ssim", "SSIM", 4), ("lpips", "LPIPS", 4), ("niqe", "NIQE", 3), ("brisque", "BRISQUE", 2)]
    cols = [c for c in cols if c[0] in report.metrics and report.metrics[c[0]]["available"]]
    header = ["image", "method", *(c[1] for c in cols), "sec"]
    lines: list[list[str]] = []
    if per_image:
        for img in report.images:
            for method, vals in img.results.items():
                row = [img.name, method, *(_fmt(vals.get(k), d) for k, _, d in cols)]
                lines.append([*row, _fmt(vals.get("seconds"), 2)])
    for method, vals in report.mean().items():
        row = ["MEAN", method, *(_fmt(vals.get(k), d) for k, _, d in cols)]
        lines.append([*row, _fmt(vals.get("seconds"), 2)])
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
    fmt_row = lambda r: "  ".join(  # noqa: E731
        c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
    )
    out = [fmt_row(header), "  ".join("-" * w for w in widths), *map(fmt_row, lines)]
    notes = [f"{m}: unavailable ({v['reason']})" for m, v in report.methods.items() if not v["available"]]
    notes += [f"{m}: unavailable ({v['reason']})" for m, v in report.metrics.items() if not v["available"]]
    notes += [f"{e['image']} {e['method']}: {e['error']}".replace("  ", " ") for e in report.errors]
    return "\n".join(out + notes)
