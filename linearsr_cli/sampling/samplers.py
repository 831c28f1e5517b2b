"""Pure sampler functions for the x0-predicting rectified flow.

Every sampler takes `denoise(x_t, t) -> x0_hat` on the whole canvas (the engine may tile inside
it), the starting noise at t = ts[0], and the time grid. No device choice, no I/O, no state: the
same inputs give the same output. `callback(i, t, x0_hat)` reports progress after each call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from linearsr_cli.config import SamplerConfig, Solver
from linearsr_cli.sampling.schedules import flow_timesteps, log_snr

Denoise = Callable[[Tensor, float], Tensor]
Callback = Callable[[int, float, Tensor], None] | None


def draw_noise(shape: Sequence[int], seed: int) -> Tensor:
    """Standard normal noise from a CPU generator seeded per image: identical on every device."""
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randn(tuple(shape), generator=gen, dtype=torch.float32)


def _eps_from_x0(x_t: Tensor, x0: Tensor, t: float) -> Tensor:
    """eps_hat = (x_t - (1 - t) x0_hat) / t, from x_t = (1 - t) x0 + t eps."""
    return (x_t - (1.0 - t) * x0) / t


def sample_one_step(denoise: Denoise, noise: Tensor, *, callback: Callback = None) -> Tensor:
    """1-NFE: the x0 estimate of a single pass from pure noise at t = 1 (fidelity-oriented)."""
    x0 = denoise(noise, 1.0)
    if callback is not None:
        callback(0, 1.0, x0)
    return x0


def sample_euler(
    denoise: Denoise, noise: Tensor, ts: Sequence[float], *, callback: Callback = None
) -> Tensor:
    """Euler on the flow ODE dx/dt = (x - x0_hat) / t (equals DDIM for rectified flow)."""
    x = noise
    for i, (t, s) in enumerate(zip(ts[:-1], ts[1:], strict=True)):
        x0 = denoise(x, t)
        if callback is not None:
            callback(i, t, x0)
        x = (1.0 - s) * x0 + s * _eps_from_x0(x, x0, t)
    return x


def sample_heun(
    denoise: Denoise, noise: Tensor, ts: Sequence[float], *, callback: Callback = None
) -> Tensor:
    """Heun's second-order method (Karras et al. 2022, Alg. 1) on the flow ODE; Euler on the last step to t = 0."""
    x = noise
    for i, (t, s) in enumerate(zip(ts[:-1], ts[1:], strict=True)):
        x0 = denoise(x, t)
        if callback is not None:
            callback(i, t, x0)
        d = (x - x0) / t  # velocity eps - x0
        x_next = x + (s - t) * d
        if s > 0:
            x0_next = denoise(x_next, s)
            d_next = (x_next - x0_next) / s
            x_next = x + (s - t) * 0.5 * (d + d_next)
        x = x_next
    return x


def sample_dpmpp_2m(
    denoise: Denoise, noise: Tensor, ts: Sequence[float], *, callback: Callback = None
) -> Tensor:
    """DPM-Solver++(2M) with data prediction (Lu et al. 2022, Alg. 2) for alpha_t = 1 - t, sigma_t = t.

    x_s = (sigma_s / sigma_t) x_t + (alpha_s - sigma_s alpha_t / sigma_t) D, with D the x0 estimate
    corrected by the previous one (second order) when the previous step had a finite log-SNR.
    """
    x = noise
    prev_x0: Tensor | None = None
    prev_h: float | None = None
    for i, (t, s) in enumerate(zip(ts[:-1], ts[1:], strict=True)):
        x0 = denoise(x, t)
        if callback is not None:
            callback(i, t, x0)
        # h = lambda_s - lambda_t in half-log-SNR units (log alpha/sigma); infinite at t = 1 or s = 0.
        h = 0.5 * (log_snr(s) - log_snr(t))
        d = x0
        if prev_x0 is not None and prev_h is not None and _finite(prev_h) and _finite(h):
            r = prev_h / h
            d = (1.0 + 1.0 / (2.0 * r)) * x0 - (1.0 / (2.0 * r)) * prev_x0
        x = (s / t) * x + ((1.0 - s) - s * (1.0 - t) / t) * d
        prev_x0, prev_h = x0, h
    return x


def _finite(v: float) -> bool:
    return v == v and abs(v) != float("inf")


# the multi-step sampler of each name in config.SOLVERS (SamplerConfig.solver)
SAMPLERS: dict[Solver, Callable[..., Tensor]] = {"euler": sample_euler, "heun": sample_heun, "dpmpp2m": sample_dpmpp_2m}


def sample(denoise: Denoise, noise: Tensor, cfg: SamplerConfig, *, callback: Callback = None) -> Tensor:
    """Run the sampler that `cfg` names; returns the x0 estimate at t = 0."""
    if cfg.steps == 1:
        return sample_one_step(denoise, noise, callback=callback)
    ts = flow_timesteps(cfg.steps, shift=cfg.shift)
    return SAMPLERS[cfg.solver](denoise, noise, ts, callback=callback)


def evaluation_times(cfg: SamplerConfig) -> list[float]:
    """The times t at which a run of `cfg` calls the network (so the experts it visits)."""
    if cfg.steps == 1:
        return [1.0]
    ts = flow_timesteps(cfg.steps, shift=cfg.shift)
    extra = [s for s in ts[1:] if s > 0] if cfg.solver == "heun" else []
    return [*ts[:-1], *extra]


def count_evaluations(cfg: SamplerConfig) -> int:
    """Network evaluations (NFE) a run of `cfg` makes: for progress bars and benchmarks."""
    if cfg.steps == 1:
        return 1
    if cfg.solver == "heun":
        return 2 * cfg.steps - 1
    return cfg.steps
