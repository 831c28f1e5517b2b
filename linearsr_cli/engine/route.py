"""`--input`: which prior serves an image. `choose_input` is the one place that decides it (a named
--input, the router's choice for `auto`, the file's first prior for a later pass of a chain) and
`check_input` the one check of the option; for `auto` the decision is made per image from the
evidence it carries.

The clean prior (SPAN as released) is best on bicubic-like inputs; the real prior (fine-tuned on
noise, blur and JPEG) on camera and web photos. A wrong route is expensive (the real prior loses
up to 3 dB on a clean image, the clean one up to 8 dB on a degraded one), so the decision is a
learned gate like the SNR router: a logistic model over a few measurements of the LR image,

- `noise`: the luma noise sigma (8-bit units) by Immerkaer's estimator (J. Immerkaer, "Fast
  noise variance estimation", CVIU 1996): a Laplacian-difference kernel that cancels smooth
  structure; image texture raises it too, so also
- `flat_noise`: the same over the flattest fifth of the image, where texture cannot pass for noise;
- `blockiness`: log of the mean luma step across the 8x8 JPEG grid over the mean step inside
  the blocks (0 = no grid);
- `detail`: log of fine over coarse detail energy, mean |x - blur_0.7(x)| / mean |x - blur_2(x)|;
  a soft (blurred or resized) image has little fine detail relative to its coarse detail;
- `jpeg`: what the file says: (95 - q) / 30 for a JPEG saved at quality q < 95, else 0;
- `jpeg_grid`: what the pixels say about JPEG, whatever the file: how strongly the 8x8 block DCT
  coefficients of the luma cluster on multiples of one quantisation step (a JPEG decoded at this
  size and grid, e.g. a phone JPEG saved again as PNG); 0 for pixels never quantised on the grid,
- `sharpening`: what the real prior itself makes of the image: log of the high-frequency
  (Laplacian) energy of its output over bicubic's, on the central PROBE_SIDE^2 LR pixels. Trained
  on noise, blur and JPEG, it smooths an image it reads as degraded (below 0) and sharpens a clean
  one (above 0); None (read as 0) when no prior was probed (a router fitted before it gives it no
  weight, and then no probe runs),

fitted by `linearsr train router` (train/router.py) on training crops with a cost-sensitive loss (each crop
weighted by how much PSNR the wrong choice would lose), and stored in the weights' metadata.
Where the gate is unsure, one prior alone is a gamble: a router with a `Blend` (also fitted on
training crops) gives such an image both priors' images mixed, the real prior's share a
sigmoid of the gate's logit; within `snap` of 0 or 1 the share is rounded to one prior (one pass).
The JPEG evidence (`MONOTONE`: blockiness, jpeg, jpeg_grid) may only push towards the real prior:
its weights are kept >= 0 in the fit, so more blocking never sends an image to the clean prior
(which redraws the blocks as detail). Pure numpy and torch tensors in; no files, no PIL.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from linearsr_cli.config import INPUT_CHOICES, ModelConfig, SamplerConfig
from linearsr_cli.degrade import gaussian_blur
from linearsr_cli.errors import ConfigError, WeightsError

FEATURES = ("noise", "flat_noise", "blockiness", "detail", "jpeg", "jpeg_grid", "sharpening")
MONOTONE = ("blockiness", "jpeg", "jpeg_grid")  # evidence of JPEG: may only push towards `real`


@dataclass(frozen=True)
class Evidence:
    """What an image says about how it was degraded (see the module docstring)."""

    noise: float
    flat_noise: float
    blockiness: float
    detail: float
    jpeg_quality: int | None = None
    jpeg_grid: float = 0.0
    sharpening: float | None = None  # None: no prior was probed (the gate reads it as 0)

    @property
    def jpeg(self) -> float:
        q = self.jpeg_quality
        return max(0.0, (95.0 - q) / 30.0) if q is not None else 0.0

    def vector(self) -> np.ndarray:
        return np.array([getattr(self, name) or 0.0 for name in FEATURES], dtype=np.float64)

    def describe(self) -> str:
        """The evidence in words for a --json record: 'jpeg q=72, noise sigma=4.1, ...'."""
        parts = [f"jpeg q={self.jpeg_quality}"] if self.jpeg_quality is not None else []
        parts += [f"noise σ≈{self.flat_noise:.1f} (flat areas) / {self.noise:.1f}", f"blockiness {self.blockiness:.2f}",
                  f"jpeg grid {self.jpeg_grid:.2f}", f"detail {self.detail:.2f}"]
        if self.sharpening is not None:
            parts.append(f"sharpening {self.sharpening:.2f} (the real prior on the centre)")
        return ", ".join(parts)


def _luma(rgb: Tensor) -> Tensor:
    """(3, h, w) in [0, 1] -> (1, 1, h, w) BT.601 luma in 8-bit units, fp32."""
    w = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float32).view(3, 1, 1)
    return (rgb.float().cpu() * w).sum(0)[None, None] * 255.0


IMMERKAER = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]]).view(1, 1, 3, 3)


def noise_sigmas(y: Tensor, flat_share: float = 0.2) -> tuple[float, float]:
    """Immerkaer (1996): sigma = sqrt(pi/2) / 6 * mean |y * M| for the 3x3 kernel
    M = [[1,-2,1],[-2,4,-2],[1,-2,1]] over the whole luma y (1, 1, h, w), and the same over its
    flattest `flat_share` of pixels (smallest local gradient), where texture cannot pass for noise."""
    if min(y.shape[-2:]) < 3:
        return 0.0, 0.0
    resp = F.conv2d(y, IMMERKAER).abs().flatten()  # (h-2)(w-2)
    grad = ((y[..., 1:-1, 2:] - y[..., 1:-1, :-2]).abs() + (y[..., 2:, 1:-1] - y[..., :-2, 1:-1]).abs())
    grad = F.avg_pool2d(grad, 3, 1, 1, count_include_pad=False).flatten()  # local gradient, same size as inner
    k = max(1, int(flat_share * grad.numel()))
    flat = resp[torch.topk(grad, k, largest=False).indices]
    c = math.sqrt(math.pi / 2.0) / 6.0
    return float(c * resp.mean()), float(c * flat.mean())


def blockiness(y: Tensor, block: int = 8) -> float:
    """log(mean |step| across the block grid / mean |step| inside blocks), both directions."""
    ratios = []
    for dim in (-1, -2):
        d = torch.diff(y, dim=dim).abs()  # step between pixel i and i + 1 along dim
        n = d.shape[dim]
        if n < 2 * block:
            continue
        idx = torch.arange(n)
        edge = (idx % block) == block - 1  # step from the last pixel of a block to the next block
        across = d.index_select(dim, idx[edge]).mean()
        inside = d.index_select(dim, idx[~edge]).mean()
        ratios.append(float((across + 1e-3) / (inside + 1e-3)))
    return float(math.log(sum(ratios) / len(ratios))) if ratios else 0.0


def detail(y: Tensor) -> float:
    """log(mean |y - blur_0.7(y)| / mean |y - blur_2(y)|): fine over coarse detail energy."""
    fine = (y - gaussian_blur(y, 0.7)).abs().mean()
    coarse = (y - gaussian_blur(y, 2.0)).abs().mean()
    return float(math.log((fine + 1e-3) / (coarse + 1e-3)))


def dct_matrix(n: int = 8) -> Tensor:
    """The orthonormal DCT-II matrix D (n, n): D @ block @ D.T is the 2-D DCT JPEG quantises
    (ITU-T T.81, A.3.3: the same transform, with the 1/sqrt(2) of the DC row)."""
    k = torch.arange(n, dtype=torch.float64)
    d = torch.cos(math.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d


DCT8 = dct_matrix(8)
GRID_COEFFS = ((0, 1), (1, 0), (1, 1), (0, 2), (2, 0), (1, 2), (2, 1), (2, 2), (0, 3), (3, 0))  # low AC (u, v)
GRID_STEPS = torch.arange(3, 41, dtype=torch.float64)  # candidate quantisation steps (quality ~95 down to ~20)


def jpeg_grid(y: Tensor, max_blocks: int = 4096, min_count: int = 16) -> float:
    """How strongly the 8x8 block DCT coefficients of the luma y (1, 1, h, w, 8-bit units) sit on
    multiples of one step: for each low AC coefficient, max over steps q of the mean resultant
    length |mean exp(2 pi i c / q)| of the coefficients with |c| > q/2 (the zero bin says nothing:
    flat areas are near zero in any image), less 3/sqrt(count) (about the largest chance level among
    the 38 steps for phases at random); averaged over the
    coefficients. ~0 for pixels never quantised on this grid, 0.4-0.9 for a JPEG of quality <= 90
    decoded at this size (rounding to 8 bits blurs the lattice by ~0.4, so steps < 3 are not seen).
    At most `max_blocks` evenly spaced blocks are read, so the cost is bounded for any image."""
    h, w = y.shape[-2] // 8 * 8, y.shape[-1] // 8 * 8
    if h < 8 or w < 8:
        return 0.0
    blocks = y[0, 0, :h, :w].double().reshape(h // 8, 8, w // 8, 8).permute(0, 2, 1, 3).reshape(-1, 8, 8)  # (n, 8, 8)
    if blocks.shape[0] > max_blocks:
        blocks = blocks[torch.linspace(0, blocks.shape[0] - 1, max_blocks).round().long()]
    coeffs = DCT8 @ blocks @ DCT8.T  # (n, 8, 8)
    c = torch.stack([coeffs[:, u, v] for u, v in GRID_COEFFS], 1)[..., None]  # (n, P, 1)
    q = GRID_STEPS  # (Q,)
    use = (c.abs() > q / 2).double()  # (n, P, Q)
    phase = 2 * math.pi * c / q  # (n, P, Q)
    count = use.sum(0)  # (P, Q)
    resultant = torch.hypot((use * phase.cos()).sum(0), (use * phase.sin()).sum(0)) / count.clamp(min=1)
    score = torch.where(count >= min_count, resultant - 3.0 / count.clamp(min=1).sqrt(), torch.zeros_like(resultant))
    return float(score.amax(1).clamp(min=0).mean())


PROBE_SIDE = 128  # LR pixels (per side) of the central region the real prior is probed on
LAPLACE = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
PriorProbe = Callable[[Tensor], Tensor]  # (3, h, w) LR -> the real prior's (3, s h, s w) image


def probe_region(rgb: Tensor, side: int = PROBE_SIDE) -> Tensor:
    """The central side x side pixels of (3, h, w) `rgb` (all of a smaller image)."""
    h, w = rgb.shape[-2:]
    top, left = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return rgb[..., top : top + side, left : left + side]


def sharpening(lr: Tensor, prior_image: Tensor) -> float:
    """log(Laplacian energy of the prior's image of `lr` / that of bicubic(lr)), on luma: below 0
    the prior smoothed the image (it read it as degraded), above 0 it sharpened it."""
    from linearsr_cli.nn.dit import bicubic_upsample

    scale = prior_image.shape[-1] // lr.shape[-1]
    base = bicubic_upsample(lr.float().cpu()[None], scale)[0].clamp(0.0, 1.0)
    if min(base.shape[-2:]) < 3:
        return 0.0
    return float(math.log((laplacian_energy(prior_image) + 1e-6) / (laplacian_energy(base) + 1e-6)))


def laplacian_energy(rgb: Tensor) -> float:
    """The high-frequency energy of (3, h, w) `rgb`: the mean squared Laplacian of its luma, the
    image clamped to [0, 1]."""
    return float(F.conv2d(_luma(rgb.clamp(0.0, 1.0)), LAPLACE).pow(2).mean())


def measure(rgb: Tensor, jpeg_quality: int | None = None, prior: PriorProbe | None = None) -> Evidence:
    """The evidence of an LR image (3, h, w) in [0, 1] (what the router sees); `prior` (the real
    prior) measures `sharpening` on probe_region(rgb), else it is None."""
    y = _luma(rgb)
    sharp = None
    if prior is not None:
        region = probe_region(rgb)
        with torch.no_grad():
            sharp = sharpening(region, prior(region).float().cpu())
    return Evidence(*noise_sigmas(y), blockiness(y), detail(y), jpeg_quality, jpeg_grid(y), sharp)


RUN_KINDS = ("1-step", "multi-step")
ROUTED_INPUTS = ("clean", "real")
BLEND_GRID = tuple(i / 10 for i in range(11))  # the real prior's shares a Blend is fitted over
# the run kinds a fitted Blend serves by default: at 1-NFE a blended image costs a second prior pass,
# which the fidelity preset's speed cannot pay (weights/MODEL_CARD.md)
BLEND_RUNS = ("multi-step",)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(min(x, 50.0), -50.0)))


def run_kind(steps: int) -> str:
    """A run's kind for Router.fixed: "1-step" (the fidelity preset) or "multi-step"."""
    return "1-step" if steps <= 1 else "multi-step"


def parse_fixed(fixed: Mapping[str, str] | Sequence[str]) -> dict[str, str]:
    """Router.fixed from a mapping or from "KIND=INPUT" strings ("multi-step=clean"); ValueError
    for an unknown run kind or input."""
    pairs = fixed.items() if isinstance(fixed, Mapping) else (str(t).partition("=")[::2] for t in fixed)
    out = {}
    for kind, value in pairs:
        if kind not in RUN_KINDS or value not in ROUTED_INPUTS:
            raise ValueError(f"a fixed route is KIND=INPUT with KIND in {RUN_KINDS} and INPUT in {ROUTED_INPUTS}, "
                             f"got {kind}={value}")
        out[str(kind)] = str(value)
    return out


@dataclass(frozen=True)
class Blend:
    """The real prior's share of an image, from the gate's logit: sigmoid(slope * logit + offset),
    0 or 1 within `snap` of either (one prior alone, one pass); for the run kinds in `runs`
    (RUN_KINDS), elsewhere the gate's hard choice."""

    slope: float
    offset: float
    snap: float
    runs: tuple[str, ...] = BLEND_RUNS

    def __post_init__(self) -> None:
        if not 0.0 <= self.snap < 0.5 or not set(self.runs) <= set(RUN_KINDS) or not all(map(math.isfinite, (self.slope, self.offset))):
            raise ValueError(f"a blend needs a finite slope and offset, 0 <= snap < 0.5 and runs among {RUN_KINDS}")

    def share(self, logit: float) -> float:
        w = sigmoid(self.slope * logit + self.offset)
        return 0.0 if w < self.snap else 1.0 if w > 1.0 - self.snap else w

    def to_dict(self) -> dict[str, Any]:
        return {"slope": self.slope, "offset": self.offset, "snap": self.snap, "runs": list(self.runs)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Blend:
        return cls(float(data["slope"]), float(data["offset"]), float(data["snap"]),
                   tuple(str(r) for r in data.get("runs", BLEND_RUNS)))


@dataclass(frozen=True)
class Router:
    """A logistic gate: P(real prior is better) = sigmoid(w . standardised(features) + b).

    `fixed` maps a kind of run (RUN_KINDS: "1-step", the fidelity preset, or "multi-step") to a
    constant input ("clean"/"real") where the gate did not beat that constant on held-out photos:
    there `--input auto` is the constant, as measured, and the record says so."""

    weights: tuple[float, ...]
    bias: float
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    features: tuple[str, ...] = FEATURES
    fitted: Mapping[str, Any] | None = None  # how it was fitted (for the model card / info)
    fixed: Mapping[str, str] | None = None  # run kind -> constant input, where the gate lost to it
    blend: Blend | None = None  # None: always one prior, by the logit's sign
    multi_step: Router | None = None  # a gate of its own for multi-step runs (fitted on their outcomes)

    def __post_init__(self) -> None:
        if not len(self.weights) == len(self.mean) == len(self.scale) == len(self.features):
            raise ValueError(f"a router needs one weight, mean and scale per feature {self.features}")

    def for_run(self, steps: int) -> Router:
        """The gate that decides runs of `steps` evaluations: the multi-step gate where there is
        one and the run is multi-step, else this one."""
        return self.multi_step if self.multi_step is not None and run_kind(steps) == "multi-step" else self

    def fixed_input(self, steps: int) -> str | None:
        """The constant input for runs of `steps` network evaluations, or None: the gate decides."""
        return (self.fixed or {}).get(run_kind(steps))

    def uses(self, feature: str) -> bool:
        """Whether the gate gives `feature` any weight (the prior probe runs only then)."""
        return feature in self.features and self.weights[self.features.index(feature)] != 0.0

    def logit(self, evidence: Evidence) -> float:
        x = (evidence.vector() - np.asarray(self.mean)) / np.asarray(self.scale)
        return float(np.dot(self.weights, x) + self.bias)

    def choose(self, evidence: Evidence, steps: int = 1) -> tuple[str, str, float]:
        """("real" | "clean", why, the real prior's share) for an image with this evidence in a
        run of `steps` evaluations: the share is 1 or 0 (that prior alone) unless the router's
        Blend applies to such runs and the gate is unsure; the kind is then the larger share's."""
        logit = self.logit(evidence)
        why = f"{evidence.describe()}; p(real)={sigmoid(logit):.2f}"
        share = float(logit > 0)
        if self.blend is not None and run_kind(steps) in self.blend.runs:
            share = self.blend.share(logit)
            if 0.0 < share < 1.0:
                return ("real" if share >= 0.5 else "clean"), f"{why}; unsure: blend, real prior's share {share:.2f}", share
        return ("real" if share else "clean"), why, share

    def to_dict(self) -> dict[str, Any]:
        out = {"features": list(self.features), "weights": list(self.weights), "bias": self.bias,
               "mean": list(self.mean), "scale": list(self.scale), "fitted": dict(self.fitted or {}),
               "fixed": dict(self.fixed or {})}
        out |= {"blend": self.blend.to_dict()} if self.blend is not None else {}
        return out | ({"multi_step": self.multi_step.to_dict()} if self.multi_step is not None else {})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Router:
        """A gate from a weights file's metadata. A gate fitted on fewer features (an older file)
        gives the missing ones weight 0, so it decides as it did."""
        try:
            features = tuple(str(f) for f in data["features"])
            unknown = [f for f in features if f not in FEATURES]
            if unknown or len(set(features)) != len(features):
                raise WeightsError(f"router features {features} are not among this version's {FEATURES}")
            given = {name: (float(w), float(m), float(s)) for name, w, m, s
                     in zip(features, data["weights"], data["mean"], data["scale"], strict=True)}
            w, m, s = zip(*(given.get(name, (0.0, 0.0, 1.0)) for name in FEATURES), strict=True)
            router = cls(tuple(w), float(data["bias"]), tuple(m), tuple(s), FEATURES, data.get("fitted") or {},
                         parse_fixed(data.get("fixed") or {}), Blend.from_dict(data["blend"]) if data.get("blend") else None,
                         cls.from_dict(data["multi_step"]) if data.get("multi_step") else None)
        except (KeyError, TypeError, ValueError) as exc:
            raise WeightsError(f"bad router metadata (weights, mean and scale need one value per feature): {exc}") from None
        return router


@dataclass(frozen=True)
class Route:
    """The prior decision for one image: the kind of input it is ("clean"/"real"), the prior that
    serves it ("clean", "real" or "texture") with that prior's `index` in the weights'
    prior_inputs, and why. A blend (Router.blend: the gate was unsure) has `shares` over
    prior_inputs, `index` the larger share's prior and `prior` naming both ("real 0.62 + clean
    0.38"). All None for weights without priors."""

    input: str | None
    prior: str | None
    index: int | None
    why: str
    warning: str | None = None  # for the record's warnings: --input auto could not look at the image
    shares: tuple[float, ...] | None = None  # a blend: each prior's share of the image

    @property
    def condition(self) -> int | tuple[float, ...] | None:
        """What the model reads as its `prior` argument: the blend's shares, else the index."""
        return self.shares if self.shares is not None else self.index


NO_PRIOR = Route(None, None, None, "")


def check_input(name: str, priors: Sequence[str] | None = None) -> str:
    """The one check of --input: `name` is one of INPUT_CHOICES and, given a weights file's
    `priors`, one the file has (auto always applies); ConfigError otherwise."""
    if name not in INPUT_CHOICES:
        raise ConfigError(f"--input must be one of {', '.join(INPUT_CHOICES)}, got {name!r}")
    if priors is not None and name != "auto" and name not in priors:
        what = f"priors for {', '.join(priors)} inputs only" if priors else "no prior"
        raise ConfigError(f"these weights have {what}, so --input {name} does not apply")
    return name


def choose_input(
    cfg: ModelConfig, router: Router | None, requested: str | None, lr: Tensor | None = None,
    jpeg_quality: int | None = None, sampler: SamplerConfig | None = None, *, weights_name: str = "these weights",
    probe: PriorProbe | None = None,
) -> Route:
    """The one prior decision for an image of a `cfg` model: which kind of input `lr` (3, h, w)
    is, the prior that serves it in a `sampler` run (prior_for: the texture prior for real
    inputs of multi-step runs, when the weights have one), and why.

    `requested` "clean"/"real": that prior (check_input: ConfigError when the weights lack it);
    "auto": the weights' `router` decides from the image's evidence (`jpeg_quality` is what its
    file says; `probe`, the real prior, is run on a central region for the `sharpening` evidence
    only when the router decides), or, without a router, the file's first prior with a warning; None (nothing was
    asked: a later pass of a chain, which sees the clean output of the one before): the file's
    first prior. NO_PRIOR for weights without priors."""
    if requested is not None:
        check_input(requested, cfg.prior_inputs)
    if not cfg.prior_inputs:
        return NO_PRIOR
    sampler = sampler or SamplerConfig()
    warning = None
    if requested is None:
        first = cfg.prior_inputs[0]
        return Route(first, first, cfg.prior_index(first), "a later pass: the output of the one before")
    if requested != "auto":
        kind, why = requested, "--input"
    elif router is not None and lr is not None and set(ROUTED_INPUTS) <= set(cfg.prior_inputs):
        fixed = router.fixed_input(sampler.steps)
        router = router.for_run(sampler.steps)
        if fixed is not None:
            kind, why = fixed, (f"the weights fix --input auto to '{fixed}' for {run_kind(sampler.steps)} runs: on "
                                "held-out photos their router did not beat that constant")
        else:
            evidence = measure(lr, jpeg_quality, probe if router.uses("sharpening") else None)
            kind, why, share = router.choose(evidence, sampler.steps)
            if 0.0 < share < 1.0:
                return blended_route(cfg, kind, share, sampler, why)
    else:
        kind, why = cfg.prior_inputs[0], "the weights' first prior (they have no router)"
        if len(cfg.prior_inputs) > 1:
            warning = (f"--input auto: {weights_name} has no router, so the image was not looked at and got the "
                       f"'{kind}' prior; give camera and web photos --input real")
    prior = prior_for(kind, sampler, cfg.prior_inputs)
    return Route(kind, prior, cfg.prior_index(prior), why, warning)


def blended_route(cfg: ModelConfig, kind: str, share: float, sampler: SamplerConfig, why: str) -> Route:
    """The Route of an image whose `sampler` run mixes the priors serving clean and real inputs
    (prior_for), the real one's share `share`."""
    names = {name: prior_for(name, sampler, cfg.prior_inputs) for name in ROUTED_INPUTS}
    shares = [0.0] * len(cfg.prior_inputs)
    shares[cfg.prior_index(names["real"])] += share
    shares[cfg.prior_index(names["clean"])] += 1.0 - share
    label = f"{names['real']} {share:.2f} + {names['clean']} {1.0 - share:.2f}"
    return Route(kind, label, cfg.prior_index(names[kind]), why, None, tuple(shares))


def prior_indices(cfg: ModelConfig, inputs: Sequence[str]) -> Tensor | None:
    """(B,) long indices into cfg.prior_inputs for a training batch whose samples are served by
    the priors named `inputs` (ConfigError for one the weights lack); None without priors."""
    if not cfg.has_prior:
        return None
    return torch.tensor([cfg.prior_index(name) for name in inputs], dtype=torch.long)


def prior_for(input_kind: str, sampler: SamplerConfig, available: tuple[str, ...]) -> str:
    """The prior that serves an input of `input_kind` in a `sampler` run: the texture prior for
    real inputs of a multi-step (perceptual) run when the weights have one, else the input's own
    (fidelity stays with the PSNR-best prior)."""
    if input_kind == "real" and sampler.steps > 1 and "texture" in available:
        return "texture"
    return input_kind

