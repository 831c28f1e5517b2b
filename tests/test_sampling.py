"""Schedules, expert boundaries, the router, and the samplers' math."""

from __future__ import annotations

import math

import pytest
import torch

from linearsr_cli.config import SOLVERS, SamplerConfig, bisect_boundaries
from linearsr_cli.errors import ConfigError
from linearsr_cli.sampling.samplers import (
    SAMPLERS,
    count_evaluations,
    draw_noise,
    sample,
    sample_dpmpp_2m,
    sample_euler,
    sample_heun,
)
from linearsr_cli.sampling.schedules import (
    expert_for_log_snr,
    expert_interval,
    flow_timesteps,
    log_snr,
    t_from_log_snr,
)
from tests.util import random_model, tiny_model_config


def test_log_snr_and_inverse():
    assert log_snr(0.5) == 0.0
    assert log_snr(1.0) == -math.inf and log_snr(0.0) == math.inf
    for t in (0.02, 0.3, 0.77, 0.98):
        assert t_from_log_snr(log_snr(t)) == pytest.approx(t)
        assert math.exp(log_snr(t)) == pytest.approx(((1 - t) / t) ** 2)


def test_boundaries_are_bisection_midpoints():
    assert bisect_boundaries(-8.0, 8.0, 1) == ()
    assert bisect_boundaries(-8.0, 8.0, 2) == (0.0,)
    assert bisect_boundaries(-8.0, 8.0, 4) == (-4.0, 0.0, 4.0)
    assert bisect_boundaries(-2.0, 6.0, 4) == (0.0, 2.0, 4.0)
    cfg = tiny_model_config()
    lo, hi = cfg.log_snr_range
    mid = (lo + hi) / 2
    assert cfg.expert_boundaries == pytest.approx(((lo + mid) / 2, mid, (mid + hi) / 2))


def test_router_intervals():
    b = (-4.0, 0.0, 4.0)
    assert expert_for_log_snr(-math.inf, b) == 0
    assert expert_for_log_snr(-4.0001, b) == 0
    assert expert_for_log_snr(-4.0, b) == 1
    assert expert_for_log_snr(0.5, b) == 2
    assert expert_for_log_snr(math.inf, b) == 3
    assert expert_interval(0, b, (-8, 8)) == (-8, -4.0)
    assert expert_interval(3, b, (-8, 8)) == (4.0, 8)


@pytest.mark.parametrize("num_experts", [1, 2, 4])
@pytest.mark.parametrize("steps", [1, 3, 8, 20])
def test_every_step_calls_exactly_the_expert_of_its_log_snr(num_experts, steps):
    model = random_model(tiny_model_config(num_experts=num_experts))
    calls: list[int] = []
    for i, expert in enumerate(model.experts):
        expert.register_forward_hook(lambda *_, i=i: calls.append(i))
    lr = torch.rand(1, 3, 4, 4)
    ts_called: list[float] = []

    def denoise(x, t):
        ts_called.append(t)
        return model(x, t, lr)

    with torch.no_grad():
        sample(denoise, draw_noise((1, 3, 16, 16), 0), SamplerConfig(steps=steps, solver="euler"))
    expected = [expert_for_log_snr(log_snr(t), model.cfg.expert_boundaries) for t in ts_called]
    assert calls == expected  # one expert per call, the one whose interval holds lambda(t)
    assert len(calls) == count_evaluations(SamplerConfig(steps=steps, solver="euler"))
    if num_experts == 4 and steps == 20:
        assert sorted(set(calls)) == [0, 1, 2, 3]


def test_batch_with_mixed_times_routes_each_sample():
    model = random_model(tiny_model_config(num_experts=4))
    lr = torch.rand(4, 3, 4, 4)
    x = torch.randn(4, 3, 16, 16)
    t = torch.tensor([0.99, 0.6, 0.4, 0.01])
    with torch.no_grad():
        mixed = model(x, t, lr)
        for i in range(4):
            single = model(x[i : i + 1], float(t[i]), lr[i : i + 1])
            torch.testing.assert_close(mixed[i : i + 1], single, atol=1e-5, rtol=1e-5)


def test_timesteps_grid_and_shift():
    ts = flow_timesteps(4)
    assert ts == [1.0, 0.75, 0.5, 0.25, 0.0]
    shifted = flow_timesteps(4, shift=3.0)
    assert shifted[0] == 1.0 and shifted[-1] == 0.0
    assert all(a > b for a, b in zip(shifted, shifted[1:], strict=False))
    assert shifted[2] > 0.5


@pytest.mark.parametrize("shift", [0.1, 0.15, 0.18, 0.2, 0.22, 0.3, 0.4, 3.0])
@pytest.mark.parametrize("steps", [1, 2, 3, 4])
def test_timesteps_start_at_pure_noise_for_every_shift(steps, shift):
    """s / (1 + (s - 1)) is 1.0000000000000002 in floating point for s = 0.2: a first t above 1
    has a NaN log-SNR, which routed the first step to the polishing expert."""
    ts = flow_timesteps(steps, shift=shift)
    assert ts[0] == 1.0 and ts[-1] == 0.0 and len(ts) == steps + 1
    assert all(a > b for a, b in zip(ts, ts[1:], strict=False))
    assert expert_for_log_snr(log_snr(ts[0]), (-3.9, 0.0, 3.9)) == 0


def test_model_refuses_times_outside_the_flow():
    model = random_model()
    s = model.cfg.scale
    x, lr = torch.zeros(1, 3, 8 * s, 8 * s), torch.zeros(1, 3, 8, 8)
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        model(x, 1.0000000000000002, lr)


def _oracle(x0_true):
    """A denoiser that knows x0: every solver must land on x0 exactly (straight-line flow)."""
    return lambda x, t: x0_true


@pytest.mark.parametrize("solver", [sample_euler, sample_heun, sample_dpmpp_2m])
def test_solvers_recover_x0_from_an_oracle(solver):
    x0 = torch.randn(1, 3, 8, 8)
    noise = draw_noise((1, 3, 8, 8), 5)
    out = solver(_oracle(x0), noise, flow_timesteps(6))
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=1e-5)


def test_every_solver_name_has_its_sampler_and_no_other_name_passes():
    assert tuple(SAMPLERS) == SOLVERS
    with pytest.raises(ConfigError, match=r"solver must be euler, heun or dpmpp2m, got 'rk4'"):
        SamplerConfig(steps=2, solver="rk4")  # type: ignore[arg-type]


def test_second_order_solvers_beat_euler_on_a_curved_flow():
    # x0_hat(t) = 1 + t makes dx/dt = (x - x0_hat) / t curved; its exact solution from
    # x(0.9) = 0 is x(t) = 1 - t ln t + K t. Integrate 0.9 -> 0.1 in 8 steps (the last step to
    # t = 0 is first order in every solver, so stop before it).
    def denoise(x, t):
        return torch.ones(1) * (1.0 + t)

    ts = [0.9 - 0.1 * i for i in range(9)]
    k = (0.0 - 1.0 + 0.9 * math.log(0.9)) / 0.9
    exact = 1.0 - 0.1 * math.log(0.1) + k * 0.1
    errs = {
        f.__name__: abs(float(f(denoise, torch.zeros(1, dtype=torch.float64), ts)) - exact)
        for f in (sample_euler, sample_heun, sample_dpmpp_2m)
    }
    assert errs["sample_dpmpp_2m"] < 0.5 * errs["sample_euler"]
    assert errs["sample_heun"] < 0.5 * errs["sample_euler"]


def test_noise_is_deterministic_per_seed():
    assert torch.equal(draw_noise((2, 3), 7), draw_noise((2, 3), 7))
    assert not torch.equal(draw_noise((2, 3), 7), draw_noise((2, 3), 8))


def test_evaluation_times_name_the_visited_experts():
    from linearsr_cli.config import SamplerConfig
    from linearsr_cli.sampling.samplers import count_evaluations, evaluation_times

    for cfg in (SamplerConfig(steps=1), SamplerConfig(steps=4), SamplerConfig(steps=3, solver="heun"),
                SamplerConfig(steps=4, shift=0.4)):
        times = evaluation_times(cfg)
        assert len(times) == count_evaluations(cfg) and all(0 < t <= 1 for t in times)
    assert evaluation_times(SamplerConfig(steps=1)) == [1.0]
