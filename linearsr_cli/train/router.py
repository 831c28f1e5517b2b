"""Fit `--input auto`'s gate (engine/route.py) for a weights file with a clean and a real prior.

Training crops (the train split only; the held-out photos stay out) are cut as stage 0 cuts
them: half bicubic, half the realistic pipeline. Half of each kind is then "saved" as a JPEG the
way photo pipelines meet them (clean: quality 90-100, realistic: 60-95), which both changes the
pixels and gives the file's evidence (its quality); the other half stays lossless (no file
evidence). For each crop both priors run, and the gate learns from the PSNR-Y gain of the real
prior over the clean one, each crop weighted by what a wrong route would lose. Each crop also
keeps the PSNR-Y of the two priors' images mixed at the shares of route.BLEND_GRID, from which the
router's Blend (how unsure the gate must be before an image gets both) is fitted.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from linearsr_cli.checkpoints import read_safetensors, write_safetensors
from linearsr_cli.degrade import jpeg_roundtrip
from linearsr_cli.engine.route import (
    BLEND_GRID,
    BLEND_RUNS,
    FEATURES,
    MONOTONE,
    Blend,
    Evidence,
    Router,
    measure,
)
from linearsr_cli.errors import ConfigError
from linearsr_cli.evaluate.metrics import psnr_y
from linearsr_cli.nn.dit import LinearSR
from linearsr_cli.train.data import DataConfig, PairDataset

if TYPE_CHECKING:  # the engine runs the chains; imported where they run
    from linearsr_cli.config import SamplerConfig
    from linearsr_cli.engine.upscaler import Upscaler

SAMPLES_FORMAT = "linearsr-router-samples"


@dataclasses.dataclass(frozen=True)
class RouterSample:
    lr: torch.Tensor  # (3, h, w) the LR crop as the router sees it (after the JPEG save, if any)
    gain: float  # PSNR-Y(real prior) - PSNR-Y(clean prior), dB
    kind: str  # the degradation drawn: bicubic | realistic
    jpeg_quality: int | None
    sharpening: float = 0.0  # the real prior's evidence (engine/route.sharpening); 0 in older sample files
    blend_psnr: tuple[float, ...] | None = None  # PSNR-Y at each real share of BLEND_GRID; None in older files

    @property
    def evidence(self) -> Evidence:
        return dataclasses.replace(measure(self.lr, self.jpeg_quality), sharpening=self.sharpening)


def mixed_crops(data: DataConfig) -> PairDataset:
    """The training crops the router meets: `data`'s train split, half bicubic, half realistic."""
    return PairDataset(dataclasses.replace(data, degradation="mixed"), "train")


def router_crop(dataset: PairDataset, i: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, str, int | None]:
    """Crop `i` of `dataset` as a photo pipeline hands it over: (LR, HR, its degradation kind, the
    JPEG quality it was saved at or None). Half the crops are saved as a JPEG (bicubic: quality
    90-100, realistic: 60-95), seeded by (seed, i)."""
    item = dataset[i]
    lr, hr = item["lr"], item["hr"]
    rng = np.random.default_rng([seed, 7, i])
    quality = None
    if rng.random() < 0.5:  # saved as a JPEG by whoever made the file
        quality = int(rng.integers(90, 101)) if item["kind"] == "bicubic" else int(rng.integers(60, 96))
        lr = torch.from_numpy(jpeg_roundtrip(lr.permute(1, 2, 0).numpy(), quality)).permute(2, 0, 1)
    return lr, hr, str(item["kind"]), quality


def router_samples(
    model: LinearSR, data: DataConfig, count: int, *, progress: Callable[[int, int], None] | None = None
) -> list[RouterSample]:
    """`count` training crops of `data` (degradation forced to mixed), each with the real prior's
    PSNR-Y gain over the clean prior's."""
    if not {"clean", "real"} <= set(model.cfg.prior_inputs):
        raise ConfigError(f"the router chooses between a clean and a real prior; these weights have {model.cfg.prior_inputs}")
    dataset = mixed_crops(data)
    out = []
    with torch.no_grad():
        for i in range(count):
            lr, hr, kind, quality = router_crop(dataset, i, data.seed)
            images = {name: model.priors[name](lr[None].float())[0] for name in ("clean", "real")}
            curve = tuple(psnr_y((w * images["real"] + (1.0 - w) * images["clean"]).clamp(0, 1), hr, border=data.scale)
                          for w in BLEND_GRID)  # [0]: the clean prior alone, [-1]: the real one
            real = model.priors["real"]

            def probe(x: torch.Tensor, whole: torch.Tensor = images["real"], size: tuple[int, ...] = tuple(lr.shape),
                      net: torch.nn.Module = real) -> torch.Tensor:
                # the crop's real image already made, when the probe region is the whole crop
                return whole if tuple(x.shape) == size else net(x[None].float())[0]

            sharp = measure(lr.float(), quality, probe).sharpening or 0.0
            out.append(RouterSample(lr.float(), curve[-1] - curve[0], kind, quality, sharp, curve))
            if progress is not None:
                progress(i + 1, count)
    return out


def save_samples(samples: list[RouterSample], path: str | os.PathLike[str]) -> None:
    """The fitting crops (uint8 LR) and their gains, to refit or study without recomputing."""
    lrs = torch.stack([(s.lr * 255).round().to(torch.uint8) for s in samples])  # (N, 3, h, w)
    meta = {"format": SAMPLES_FORMAT, "rows": json.dumps([{"gain": s.gain, "kind": s.kind, "jpeg_quality": s.jpeg_quality,
                                                           "sharpening": s.sharpening, "blend_psnr": s.blend_psnr}
                                                          for s in samples])}
    write_safetensors(path, {"lr": lrs}, meta)


def load_samples(path: str | os.PathLike[str]) -> list[RouterSample]:
    tensors, meta = read_safetensors(path, SAMPLES_FORMAT)
    rows = json.loads(meta["rows"])
    return [RouterSample(tensors["lr"][i].float() / 255.0, float(r["gain"]), r["kind"], r["jpeg_quality"],
                         float(r.get("sharpening", 0.0)), tuple(r["blend_psnr"]) if r.get("blend_psnr") else None)
            for i, r in enumerate(rows)]


def fit_gate(x: np.ndarray, gain: np.ndarray, *, monotone: np.ndarray, unused: np.ndarray, l2: float = 1e-2,
             iterations: int = 2000) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """The regret-weighted logistic gate on a feature matrix `x` (N, F) and measured `gain` (N,)
    = PSNR(real prior) - PSNR(clean prior): a logistic regression on sign(gain) with each crop
    weighted by |gain| (the loss of routing it wrong), so the fit minimises expected regret rather
    than counting mistakes; projected gradient descent on standardised features with a small L2
    penalty, the weights of the `monotone` columns kept >= 0 and of the `unused` ones at 0.
    Returns (weights, bias, mean, scale): the logit is ((x - mean) / scale) @ weights + bias."""
    g = np.asarray(gain, dtype=np.float64)
    mean, scale = x.mean(0), x.std(0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    z = (x - mean) / scale
    y = (g > 0).astype(np.float64)
    c = np.abs(g) / max(np.abs(g).mean(), 1e-9)  # (N,) cost of a wrong route
    w, b = np.zeros(z.shape[1]), 0.0
    lr = 0.5
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(z @ w + b)))
        r = c * (p - y) / len(y)
        w -= lr * (z.T @ r + l2 * w)
        w[monotone] = np.maximum(w[monotone], 0.0)
        w[unused] = 0.0
        b -= lr * float(r.sum())
    return w, b, mean, scale


def routing_regret(choose_real: np.ndarray, gain: np.ndarray) -> float:
    """Mean dB lost by routing crops with measured `gain` as `choose_real` (bool per crop) says."""
    g = np.asarray(gain, dtype=np.float64)
    return float(np.where(choose_real, np.maximum(-g, 0), np.maximum(g, 0)).mean())


def fit_router(evidence: Sequence[Evidence], gain: Sequence[float], *, l2: float = 1e-2,
               iterations: int = 2000, features: Sequence[str] = FEATURES) -> Router:
    """Fit the gate (fit_gate) on crops' `evidence` with measured `gain`, on `features` only; the
    MONOTONE features' weights kept >= 0."""
    unknown = sorted(set(features) - set(FEATURES))
    if unknown or not features:
        raise ConfigError(f"router features must be among {', '.join(FEATURES)}, got {list(features)}")
    x = np.stack([e.vector() for e in evidence])  # (N, F)
    g = np.asarray(gain, dtype=np.float64)
    monotone = np.array([name in MONOTONE for name in FEATURES])
    unused = np.array([name not in features for name in FEATURES])
    w, b, mean, scale = fit_gate(x, g, monotone=monotone, unused=unused, l2=l2, iterations=iterations)
    choice = ((x - mean) / scale) @ w + b > 0
    fitted = {"crops": len(g), "train_regret_db": routing_regret(choice, g), "train_accuracy": float((choice == (g > 0)).mean()),
              "features": [name for name in FEATURES if name in features]}
    return Router(tuple(w), b, tuple(mean), tuple(scale), FEATURES, fitted)


def blend_regret(logits: np.ndarray, curves: np.ndarray, blend: Blend) -> float:
    """Mean dB lost against the better prior alone, per crop, by mixing at `blend`'s shares of
    the crops' `logits` (N,); `curves` (N, K) PSNR-Y at K evenly spaced shares from 0 to 1
    (BLEND_GRID, or CHAIN_SHARES), interpolated linearly between them. Below 0: the blend beat
    the better prior."""
    shares = np.array([blend.share(float(v)) for v in logits])
    steps = curves.shape[1] - 1
    i = np.clip(np.floor(shares * steps).astype(int), 0, steps - 1)
    f = shares * steps - i
    rows = np.arange(len(curves))
    got = curves[rows, i] * (1.0 - f) + curves[rows, i + 1] * f
    return float((np.maximum(curves[:, 0], curves[:, -1]) - got).mean())


SNAPS = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2)  # candidate Blend.snap, largest first taken if it costs <= SNAP_COST
SNAP_COST = 0.005  # dB of training regret a larger snap (fewer images run both priors) may cost


def fit_blend(logits: Sequence[float], curves: Sequence[Sequence[float]]) -> Blend:
    """The Blend that loses least PSNR on the training crops (grid search over slope and offset,
    blend_regret), then the largest snap of SNAPS that costs at most SNAP_COST dB more."""
    x, c = np.asarray(logits, dtype=np.float64), np.asarray(curves, dtype=np.float64)
    grid = [Blend(float(a), float(b), 0.0) for a in np.linspace(0.1, 3.0, 30) for b in np.linspace(-2.0, 2.0, 41)]
    best = min(grid, key=lambda bl: blend_regret(x, c, bl))
    floor = blend_regret(x, c, best)
    snap = max(s for s in SNAPS if blend_regret(x, c, dataclasses.replace(best, snap=s)) <= floor + SNAP_COST)
    return dataclasses.replace(best, snap=snap)


CHAIN_SHARES = (0.0, 0.5, 1.0)  # the real side's shares at which a multi-step gate's crops are scored


def chain_curve(up: Upscaler, lr: torch.Tensor, hr: torch.Tensor, sampler: SamplerConfig,
                shares: Sequence[float] = CHAIN_SHARES) -> tuple[float, ...]:
    """PSNR-Y of a `sampler` run (engine Upscaler `up`) of crop `lr` whose structure expert starts
    from the priors of clean and real inputs mixed at each of `shares` (0: the clean prior's run,
    1: the real side's, in a multi-step run the texture prior's)."""
    from linearsr_cli.engine.route import blended_route
    from linearsr_cli.engine.upscaler import Conditioning

    out = []
    for w in shares:
        route = blended_route(up.cfg, "real" if w >= 0.5 else "clean", float(w), sampler, "")
        out.append(psnr_y(up(lr.float(), sampler, Conditioning(route.condition)), hr, border=up.scale))
    return tuple(out)


def fit_multi_step(evidence: Sequence[Evidence], curves: Sequence[Sequence[float]],
                   features: Sequence[str] = FEATURES) -> Router:
    """A gate for multi-step runs, fitted on what those runs gave on the fitting crops: `curves`
    (one per crop's `evidence`, PSNR-Y at CHAIN_SHARES, chain_curve) give the gain of the real
    side's run over the clean one's, and its Blend."""
    c = np.asarray(curves, dtype=np.float64)
    gate = with_blend(fit_router(evidence, c[:, -1] - c[:, 0], features=features), evidence, c, ("multi-step",))
    return dataclasses.replace(gate, fitted={**dict(gate.fitted or {}), "outcome": "multi-step runs",
                                             "shares": list(CHAIN_SHARES)})


def with_blend(gate: Router, evidence: Sequence[Evidence], curves: np.ndarray, runs: Sequence[str]) -> Router:
    """`gate` with the Blend fitted on its logits of the crops' `evidence` and their `curves`
    (fit_blend), for the run kinds `runs`, and how it did on them in its `fitted` record."""
    logits = np.array([gate.logit(e) for e in evidence])
    found = dataclasses.replace(fit_blend(logits, curves), runs=tuple(runs))
    shares = np.array([found.share(float(v)) for v in logits])
    fitted = {**dict(gate.fitted or {}), "blend_train_regret_db": blend_regret(logits, curves, found),
              "blended_share": float(((shares > 0) & (shares < 1)).mean())}
    return dataclasses.replace(gate, blend=found, fitted=fitted)


def fit(samples: list[RouterSample], data: DataConfig, features: Sequence[str] = FEATURES,
        blend_runs: Sequence[str] = BLEND_RUNS) -> Router:
    """The gate fitted on `samples` (on `features` only), with a record of how, and its Blend for
    the run kinds `blend_runs` (none: no blend), fitted on the samples' blend curves (ConfigError
    when a samples file predates them). The curves are the fidelity preset's (the priors' images
    alone); whether a multi-step run gains from the same shares is measured on held-out photos."""
    evidence = [s.evidence for s in samples]
    router = fit_router(evidence, [s.gain for s in samples], features=features)
    if blend_runs:
        if any(s.blend_psnr is None for s in samples):
            raise ConfigError("these fitting crops have no blend curves (an older samples file): recompute them, "
                              "or fit without a blend (--blend-runs '')")
        router = with_blend(router, evidence, np.array([s.blend_psnr for s in samples]), blend_runs)
    fitted: dict[str, Any] = {
        **dict(router.fitted or {}),
        "command": "linearsr train router",
        "data": {"root": data.root, "split": "train", "crop": data.crop, "seed": data.seed},
        "oracle_gain_db": float(np.mean([max(s.gain, 0.0) for s in samples])),
    }
    return dataclasses.replace(router, fitted=fitted)
