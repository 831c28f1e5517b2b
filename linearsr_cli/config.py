"""Frozen configuration dataclasses, passed whole; no **kwargs anywhere downstream.

ModelConfig describes the network and travels inside every weights file. SamplerConfig says how
to integrate the flow; TileConfig how to cut large images. Pure data: no torch, no I/O.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from linearsr_cli.errors import ConfigError

Attention = Literal["linear", "softmax"]
Solver = Literal["euler", "heun", "dpmpp2m"]
SOLVERS: tuple[Solver, ...] = get_args(Solver)  # sampling/samplers.py runs each (SAMPLERS)
SOLVER_NAMES = f"{', '.join(SOLVERS[:-1])} or {SOLVERS[-1]}"  # "euler, heun or dpmpp2m": messages, --help

# The log-SNR range the sampling schedule covers: t in [T_LO, 1 - T_LO] (rectified flow,
# lambda(t) = 2 log((1 - t) / t)). The experts' boundaries bisect this range.
T_LO = 0.02
DEFAULT_LOG_SNR_RANGE = (2.0 * math.log(T_LO / (1.0 - T_LO)), 2.0 * math.log((1.0 - T_LO) / T_LO))


# The prior variants a weights file may hold: "clean" (SPAN as released, bicubic-like LR), "real"
# (fine-tuned in stage 0 on noisy/blurred/JPEG LR, for PSNR) and "texture" (the real prior
# fine-tuned further with the adversarial recipe, for the look of multi-step runs on real inputs).
# An input is of one of two kinds; the training data's degradation kinds map onto them.
PRIOR_INPUTS = ("clean", "real", "texture")
INPUT_KINDS = ("clean", "real")
INPUT_FOR_DEGRADATION = {"bicubic": "clean", "realistic": "real"}


def inputs_for(kinds: Sequence[str]) -> list[str]:
    """The prior input that serves each training sample of degradation kind `kinds` (clean for
    a kind without one)."""
    return [INPUT_FOR_DEGRADATION.get(k, "clean") for k in kinds]

INPUT_CHOICES = ("auto", *INPUT_KINDS)  # --input: a prior by name; auto = per image (engine/route.check_input)
# The networks a prior slot may hold: "span" (deploy-form SPAN, nn/span.py; every prior of files
# written before ModelConfig.prior_archs existed) and "srvgg" (Real-ESRGAN's SRVGGNetCompact,
# nn/srvgg.py, e.g. realesr-general-x4v3). Any slot takes any architecture.
PRIOR_ARCHS = ("span", "srvgg")


def bisect_boundaries(lo: float, hi: float, num_experts: int) -> tuple[float, ...]:
    """Expert boundaries by hierarchical bisection of [lo, hi] (LinearSR, SNR-based MoE).

    1 expert: no boundary; 2: the midpoint; 4: the midpoint, then the midpoint of each half.
    """
    if num_experts not in (1, 2, 4):
        raise ConfigError(f"num_experts must be 1, 2 or 4, got {num_experts}")
    if not hi > lo:
        raise ConfigError(f"log-SNR range must be increasing, got ({lo}, {hi})")
    intervals = [(lo, hi)]
    while len(intervals) < num_experts:
        intervals = [half for a, b in intervals for half in ((a, (a + b) / 2), ((a + b) / 2, b))]
    return tuple(b for _, b in intervals[:-1])


@dataclass(frozen=True)
class ModelConfig:
    """The LinearSR transformer: pixel-space patches over the HR canvas, one denoiser per expert.

    A token covers `patch` x `patch` HR pixels = (patch / scale)^2 LR pixels. The network predicts
    x0 of the residual over a bicubic upsample, divided by `residual_scale`.

    With a prior (`prior_inputs` not empty) the file also holds one prior network per named
    input (PRIOR_INPUTS), of the architecture `prior_archs` names for it (PRIOR_ARCHS; "span"
    for every prior when the file predates the field), and the experts listed in `prior_experts`
    (the structure expert, 0) add the prior's residual (prior(LR) - bicubic(LR)) / residual_scale
    to their x0 estimate. Those also in `bare_experts` have no network: their x0 is the prior's
    residual alone. The priors of one architecture share its shape fields (`prior_channels`,
    `prior_blocks` for SPAN; `srvgg_features`, `srvgg_convs` for SRVGG).
    """

    scale: int = 4
    patch: int = 8
    dim: int = 128
    depth: int = 6
    heads: int = 4
    ffn_mult: float = 2.5
    stem_channels: int = 32
    stem_blocks: int = 0  # residual 3x3 conv blocks at LR resolution inside the stem
    tag_dim: int = 384
    attention: Attention = "linear"
    attn_eps: float = 1e-6
    residual_scale: float = 0.1
    num_experts: int = 4
    log_snr_range: tuple[float, float] = DEFAULT_LOG_SNR_RANGE
    expert_boundaries: tuple[float, ...] = field(default=())
    prior_inputs: tuple[str, ...] = ()  # priors in the file, by input: ("clean", "real")
    prior_experts: tuple[int, ...] = ()  # experts whose x0 adds the prior's residual
    prior_channels: int = 52  # the SPAN priors' shape
    prior_blocks: int = 6
    bare_experts: tuple[int, ...] = ()  # prior experts without a network: x0 = the prior's residual
    prior_archs: tuple[str, ...] = ()  # per prior input, its network (PRIOR_ARCHS); () = all "span"
    srvgg_features: int = 64  # the SRVGG priors' shape (realesr-general-x4v3: 64, 32)
    srvgg_convs: int = 32

    def __post_init__(self) -> None:
        if self.scale < 1:
            raise ConfigError(f"scale must be >= 1, got {self.scale}")
        if self.patch % self.scale != 0:
            raise ConfigError(f"patch ({self.patch}) must be a multiple of scale ({self.scale})")
        if self.stem_blocks < 0:
            raise ConfigError(f"stem_blocks must be >= 0, got {self.stem_blocks}")
        if self.dim % self.heads != 0:
            raise ConfigError(f"dim ({self.dim}) must be divisible by heads ({self.heads})")
        if self.attention not in ("linear", "softmax"):
            raise ConfigError(f"attention must be 'linear' or 'softmax', got {self.attention!r}")
        lo, hi = (float(v) for v in self.log_snr_range)
        object.__setattr__(self, "log_snr_range", (lo, hi))
        if not self.expert_boundaries:
            object.__setattr__(
                self, "expert_boundaries", bisect_boundaries(lo, hi, self.num_experts)
            )
        bounds = tuple(float(b) for b in self.expert_boundaries)
        object.__setattr__(self, "expert_boundaries", bounds)
        if self.num_experts not in (1, 2, 4):
            raise ConfigError(f"num_experts must be 1, 2 or 4, got {self.num_experts}")
        if len(bounds) != self.num_experts - 1:
            raise ConfigError(
                f"{self.num_experts} experts need {self.num_experts - 1} boundaries, got {len(bounds)}"
            )
        if list(bounds) != sorted(bounds):
            raise ConfigError(f"expert boundaries must increase, got {bounds}")
        inputs = tuple(str(v) for v in self.prior_inputs)
        experts = tuple(int(v) for v in self.prior_experts)
        object.__setattr__(self, "prior_inputs", inputs)
        object.__setattr__(self, "prior_experts", experts)
        if bool(inputs) != bool(experts):
            raise ConfigError(f"prior_inputs {inputs} and prior_experts {experts} must be given together")
        if len(set(inputs)) != len(inputs) or any(v not in PRIOR_INPUTS for v in inputs):
            raise ConfigError(f"prior_inputs must be distinct names from {PRIOR_INPUTS}, got {inputs}")
        if list(experts) != sorted(set(experts)) or any(not 0 <= e < self.num_experts for e in experts):
            raise ConfigError(f"prior_experts must be increasing indices below {self.num_experts}, got {experts}")
        archs = tuple(str(v) for v in self.prior_archs) or ("span",) * len(inputs)
        object.__setattr__(self, "prior_archs", archs)
        if len(archs) != len(inputs) or any(a not in PRIOR_ARCHS for a in archs):
            raise ConfigError(f"prior_archs must name one of {PRIOR_ARCHS} per prior input {inputs}, got {archs}")
        if "span" in archs and (self.prior_channels < 1 or self.prior_blocks < 1):
            raise ConfigError("prior_channels and prior_blocks must be >= 1")
        if "srvgg" in archs and (self.srvgg_features < 1 or self.srvgg_convs < 0):
            raise ConfigError("srvgg_features must be >= 1 and srvgg_convs >= 0")
        bare = tuple(int(v) for v in self.bare_experts)
        object.__setattr__(self, "bare_experts", bare)
        if list(bare) != sorted(set(bare)) or any(e not in experts for e in bare):
            raise ConfigError(f"bare_experts {bare} must be increasing and among prior_experts {experts}")

    @property
    def lr_per_token(self) -> int:
        """LR pixels along one side of a token."""
        return self.patch // self.scale

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown model config keys: {', '.join(unknown)}")
        values = dict(data)
        for key in ("log_snr_range", "expert_boundaries", "prior_inputs", "prior_experts", "bare_experts", "prior_archs"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)

    @property
    def has_prior(self) -> bool:
        return bool(self.prior_inputs)

    def prior_index(self, name: str | None) -> int | None:
        """The one name -> index rule of the priors: the index in `prior_inputs` of the prior
        `name` ("clean", "real", "texture"); None or "auto" = the file's first prior; None for a
        file without priors, where no name applies. A prior the file lacks is a ConfigError,
        never a silent fallback. Its one caller is engine/route.py, where priors are chosen."""
        if name is None or name == "auto":
            return 0 if self.prior_inputs else None
        if name not in self.prior_inputs:
            have = self.prior_inputs
            what = f"priors for {', '.join(have)} inputs only" if have else "no prior"
            raise ConfigError(f"these weights have {what}, so --input {name} does not apply")
        return self.prior_inputs.index(name)

    def prior_arch(self, name: str) -> str:
        """The architecture (PRIOR_ARCHS) of the prior for input `name`, which the file has."""
        return self.prior_archs[self.prior_inputs.index(name)]

    def prior_fields(self) -> dict[str, Any]:
        """The fields that say which priors the file holds and their shapes (for
        dataclasses.replace onto another config of the same network)."""
        return {k: getattr(self, k) for k in PRIOR_FIELDS}

    def with_experts(self, num_experts: int) -> ModelConfig:
        """The same network with `num_experts` experts and bisection boundaries (the prior stays
        on the experts that still exist)."""
        experts = tuple(e for e in self.prior_experts if e < num_experts)
        return dataclasses.replace(
            self, num_experts=num_experts, expert_boundaries=(),
            prior_experts=experts, prior_inputs=self.prior_inputs if experts else (),
            prior_archs=self.prior_archs if experts else (),
            bare_experts=tuple(e for e in self.bare_experts if e < num_experts),
        )

    def with_prior(self, inputs: tuple[str, ...], experts: tuple[int, ...], archs: tuple[str, ...] = ()) -> ModelConfig:
        """The same network with priors for `inputs` (of `archs`, default all SPAN) added to the
        x0 of `experts`."""
        return dataclasses.replace(self, prior_inputs=tuple(inputs), prior_experts=tuple(experts), prior_archs=tuple(archs))

    def without_prior(self) -> ModelConfig:
        """The same network with no prior (prior fields back to their defaults)."""
        plain = ModelConfig()
        return dataclasses.replace(
            self, prior_experts=(), bare_experts=(), **{k: getattr(plain, k) for k in PRIOR_FIELDS},
        )


# ModelConfig fields that describe the prior networks (not which experts use them).
PRIOR_FIELDS = ("prior_inputs", "prior_archs", "prior_channels", "prior_blocks", "srvgg_features", "srvgg_convs")


@dataclass(frozen=True)
class SamplerConfig:
    """How to integrate the flow from t = 1 (noise) to t = 0.

    steps = 1 is 1-NFE: a single pass of the structure expert from pure noise (fidelity).
    steps > 1 runs `solver` over a time grid shifted by `shift` (perception).
    """

    steps: int = 1
    solver: Solver = "dpmpp2m"
    shift: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}")
        if self.solver not in SOLVERS:
            raise ConfigError(f"solver must be {SOLVER_NAMES}, got {self.solver!r}")
        if self.shift <= 0:
            raise ConfigError(f"shift must be > 0, got {self.shift}")




PRESETS: dict[str, SamplerConfig] = {
    "fidelity": SamplerConfig(steps=1),
    # shift 0.4 puts the 4 steps at t = 1, 0.55, 0.29, 0.12: one per SNR expert (structure,
    # refinement, texture, polishing); measured better on PSNR, ST-LPIPS, NIQE and BRISQUE than
    # the uniform grid (which never reaches the polishing expert), weights/MODEL_CARD.md
    "perceptual": SamplerConfig(steps=4, solver="dpmpp2m", shift=0.4),
}
DEFAULT_PRESET = "fidelity"


@dataclass(frozen=True)
class TileConfig:
    """Tiling in LR pixels. tile = 0 means automatic: whole image if it fits the memory budget."""

    tile: int = 0
    overlap: int = 16
    # activations of one pass (engine/upscaler.bytes_per_token); measured 2.3 GiB for an 886^2 LR
    # tile of the fidelity prior under the old 3072, which with a 12 MP photo's x4 canvas made a
    # 4.0 GiB peak; 1536 keeps that run under 3 GiB (issue 24, BENCHMARKS.md)
    memory_budget_mb: int = 1536
    min_tile: int = 32

    def __post_init__(self) -> None:
        if self.tile < 0 or self.overlap < 0:
            raise ConfigError("tile and overlap must be >= 0")
        if self.tile and self.tile <= 2 * self.overlap:
            raise ConfigError(f"tile ({self.tile}) must exceed twice the overlap ({self.overlap})")


def sampler_config(
    preset: str = DEFAULT_PRESET,
    *,
    steps: int | None = None,
    solver: str | None = None,
    seed: int = 0,
    shift: float | None = None,
) -> SamplerConfig:
    """The preset's SamplerConfig with --steps/--solver/--shift/--seed applied on top."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose {', '.join(PRESETS)}")
    base = PRESETS[preset]
    return dataclasses.replace(
        base,
        steps=base.steps if steps is None else steps,
        solver=base.solver if solver is None else solver,
        shift=base.shift if shift is None else shift,
        seed=seed,
    )

