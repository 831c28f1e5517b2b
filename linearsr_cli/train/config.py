"""What a training run is told, in parts: the optimiser, t-sampling and the loss weights.

- `TrainConfig`, the denoiser's (stage 1, one expert of stage 2: train/loop.train): an
  `OptimConfig`, a `TSampling` and `LossWeights` (ST-LPIPS, the critic; its reconstruction term
  is the x0-MSE, so it has no L1 or distillation weight).
- `PriorTrainConfig`, the prior's (stage 0, the texture prior: train/prior.train_prior): an
  `OptimConfig` and `PriorLossWeights` (L1 and distillation too); the prior draws no t, so it
  has no t-sampling part.

A field exists only where it acts, so none is silently ignored. Both are saved as one flat dict
of field names (the resume state's "train_config", recipe.json), the form the single
TrainConfig had before the split, and `from_dict` reads those older dicts too. There every
config carried every field; the fields a role lacks now held their defaults (the loop ignored
them), so they are accepted at those values and refused, naming the field, at any other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from linearsr_cli.errors import ConfigError
from linearsr_cli.train.losses import LossWeights, PriorLossWeights

if TYPE_CHECKING:
    from typing import Self  # Python 3.11; only annotations use it (the package runs on 3.10)

Precision = str  # "auto" | "fp32" | "bf16" | "fp16"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class OptimConfig:
    """The optimiser side of a run: AdamW with a linear warm-up, gradient clipping, the EMA that
    checkpoints store, mixed precision, the divergence guard (spike_factor x the median of the
    last spike_window losses or gradient norms), a checkpoint every ckpt_every steps (the newest
    keep_states keep their resume state), and the seed of the run's draws."""

    steps: int = 2000
    batch_size: int = 8
    lr: float = 2e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.99)
    warmup: int = 100
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    ckpt_every: int = 100
    precision: Precision = "auto"
    spike_factor: float = 20.0
    spike_window: int = 50
    keep_states: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        if self.steps < 1 or self.batch_size < 1 or self.ckpt_every < 1:
            raise ConfigError("steps, batch_size and ckpt_every must be >= 1")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be auto, fp32, bf16 or fp16, got {self.precision!r}")


@dataclass(frozen=True)
class TSampling:
    """What the denoiser draws for each sample: t logit-normal (t_mean, t_std) truncated to
    t_range, a share p_one at exactly t = 1, and tag dropout; the validation x0-MSE is taken at
    val_t_points fixed times of t_range. `t_range` (0, 1) = all t; an expert's is its interval."""

    t_mean: float = 0.0
    t_std: float = 1.0
    p_one: float = 0.1
    t_range: tuple[float, float] = (0.0, 1.0)
    tag_dropout: float = 0.5
    val_t_points: int = 4

    def __post_init__(self) -> None:
        lo, hi = (float(v) for v in self.t_range)
        object.__setattr__(self, "t_range", (lo, hi))
        if not 0.0 <= lo < hi <= 1.0:
            raise ConfigError(f"t_range must satisfy 0 <= lo < hi <= 1, got {self.t_range}")
        if not 0.0 <= self.p_one <= 1.0 or not 0.0 <= self.tag_dropout <= 1.0:
            raise ConfigError("p_one and tag_dropout must lie in [0, 1]")


class _Parts:
    """The flat view of a config made of parts: its fields by name, whichever part holds them."""

    def to_dict(self) -> dict[str, Any]:
        """One flat dict of every part's fields (the saved form)."""
        return {k: v for f in dataclasses.fields(self) for k, v in dataclasses.asdict(getattr(self, f.name)).items()}

    def replace(self, **values: Any) -> Self:
        """A copy with fields changed by name (as the CLI options and the saved dict name them);
        ConfigError for a name that no part of this config has."""
        changes = {}
        for f in dataclasses.fields(self):
            part = getattr(self, f.name)
            mine = {g.name: values.pop(g.name) for g in dataclasses.fields(part) if g.name in values}
            if mine:
                changes[f.name] = dataclasses.replace(part, **mine)
        if values:
            raise ConfigError(f"{type(self).__name__} has no field {', '.join(sorted(values))} (it would be ignored)")
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """The config a flat dict describes, missing fields at their defaults; a dict of the single
        TrainConfig of before the split may carry the fields this role lacks at their defaults."""
        values = dict(data)
        for key in values.keys() - cls().to_dict().keys():
            if key in SINGLE_CONFIG_DEFAULTS:
                old = SINGLE_CONFIG_DEFAULTS[key]
                if (tuple(values[key]) if isinstance(old, tuple) else values[key]) != old:
                    raise ConfigError(f"{cls.__name__} has no field {key} (it would be ignored), got {values[key]!r}")
                del values[key]
        return cls().replace(**values)


@dataclass(frozen=True)
class TrainConfig(_Parts):
    """One run of the denoiser: stage 1, or one expert of stage 2."""

    optim: OptimConfig = field(default_factory=OptimConfig)
    sampling: TSampling = field(default_factory=TSampling)
    loss: LossWeights = field(default_factory=LossWeights)


@dataclass(frozen=True)
class PriorTrainConfig(_Parts):
    """One run of the prior: stage 0, or the texture prior."""

    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: PriorLossWeights = field(default_factory=PriorLossWeights)


StageConfig = TrainConfig | PriorTrainConfig  # what the one training loop (train/loop.fit) runs

# every field of the single TrainConfig before the split, at its default
SINGLE_CONFIG_DEFAULTS = {
    **dataclasses.asdict(OptimConfig()), **dataclasses.asdict(TSampling()), **dataclasses.asdict(PriorLossWeights())
}
