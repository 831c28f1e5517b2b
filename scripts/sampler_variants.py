"""Two sampler variants the perceptual preset does not use, measured for issue 23 (weights/MODEL_CARD.md,
"The sampler does not close the bicubic NIQE gap"): any `linearsr` command, run in-process with the
engine's multi-step sampler swapped for

- `ancestral A`: Euler with fresh noise, x_s = (1 - s) x0 + s (sqrt(1 - A^2) eps_hat + A z), z drawn
  per step from the image's seed (A = 0: Euler; A = 1: every step from new noise);
- `extrapolate K`: the preset's DPM-Solver++(2M), its output (the last step's x0 estimate) pushed
  K times further along its change from the step before's estimate (a sharpening in time).

    python scripts/sampler_variants.py ancestral 0.5 eval data/eval/val512 --methods linearsr-ms \\
        --degradation bicubic --seed 0 --json-out out.json

1-NFE runs are untouched. A study tool for images of one tile (the 512-px crops here): in a tiled
run every tile would draw the same fresh noise.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import linearsr_cli.engine.upscaler as engine  # noqa: E402
from linearsr_cli.sampling import samplers  # noqa: E402
from linearsr_cli.sampling.schedules import flow_timesteps  # noqa: E402


def ancestral(amount: float):
    def sample(denoise, noise, cfg, *, callback=None):
        if cfg.steps == 1:
            return samplers.sample(denoise, noise, cfg, callback=callback)
        ts = flow_timesteps(cfg.steps, shift=cfg.shift)
        gen = torch.Generator().manual_seed(cfg.seed + 12345)
        x = noise
        for t, s in zip(ts[:-1], ts[1:], strict=True):
            x0 = denoise(x, t)
            if s == 0:
                return x0
            eps = (x - (1 - t) * x0) / t
            x = (1 - s) * x0 + s * ((1 - amount**2) ** 0.5 * eps + amount * torch.randn(x.shape, generator=gen))
        return x

    return sample


def extrapolate(k: float):
    def sample(denoise, noise, cfg, *, callback=None):
        seen = []

        def recorded(x, t):
            seen.append(denoise(x, t))
            return seen[-1]

        out = samplers.sample(recorded, noise, cfg, callback=callback)
        return out if len(seen) < 2 else seen[-1] + k * (seen[-1] - seen[-2])

    return sample


def main() -> None:
    if len(sys.argv) < 4 or sys.argv[1] not in ("ancestral", "extrapolate"):
        sys.exit(__doc__)
    variant, amount = sys.argv[1], float(sys.argv[2])
    engine.sample = (ancestral if variant == "ancestral" else extrapolate)(amount)
    from linearsr_cli.cli import main as cli

    sys.argv = ["linearsr", *sys.argv[3:]]
    cli()


if __name__ == "__main__":
    main()
