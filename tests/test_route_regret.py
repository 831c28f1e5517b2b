"""benchmarks/route_regret.hard_choice_bound: the best any hard per-image routing could do."""

import itertools

import pytest

from benchmarks.route_regret import hard_choice_bound


def _row(pc, pr, lc, lr):
    return {"psnr_clean": pc, "psnr_real": pr, "lpips_clean": lc, "lpips_real": lr}


def _brute(rows, target):
    best = None
    for picks in itertools.product(("clean", "real"), repeat=len(rows)):
        p = sum(max(r["psnr_clean"], r["psnr_real"]) - r[f"psnr_{k}"] for r, k in zip(rows, picks, strict=True)) / len(rows)
        q = sum(r[f"lpips_{k}"] - min(r["lpips_clean"], r["lpips_real"]) for r, k in zip(rows, picks, strict=True)) / len(rows)
        if p <= target + 1e-9 and (best is None or q < best):
            best = q
    return best


def test_bound_equals_brute_force_over_every_choice():
    rows = [
        _row(30.0, 31.0, 0.20, 0.25),  # real wins PSNR by 1 dB, clean wins ST-LPIPS by 0.05
        _row(40.0, 39.8, 0.10, 0.12),  # clean wins both
        _row(25.0, 25.3, 0.50, 0.60),  # conflict: 0.3 dB against 0.1
        _row(35.0, 35.1, 0.30, 0.31),  # conflict: 0.1 dB against 0.01
        _row(28.0, 27.0, 0.40, 0.30),  # clean wins PSNR by 1 dB, real wins ST-LPIPS
    ]
    for target in (0.0, 0.05, 0.1, 0.2, 0.3, 1.0):
        got = hard_choice_bound(rows, target)["least_stlpips_within_target"]
        assert got == pytest.approx(_brute(rows, target), abs=1e-9), target


def test_oracles_and_a_set_without_conflict():
    rows = [_row(30.0, 31.0, 0.20, 0.25), _row(40.0, 39.0, 0.10, 0.12)]
    bound = hard_choice_bound(rows, 0.1)
    assert bound["psnr_oracle"]["regret_stlpips"] == pytest.approx(0.025)
    assert bound["stlpips_oracle"]["regret_psnr_db"] == pytest.approx(0.5)
    assert bound["least_stlpips_within_target"] == pytest.approx(0.025)  # 0.5 dB > 0.1: no switch fits
    agree = [_row(30.0, 31.0, 0.3, 0.2), _row(40.0, 39.0, 0.1, 0.2)]
    assert hard_choice_bound(agree, 0.0)["least_stlpips_within_target"] == 0.0
    assert hard_choice_bound([], 0.1) == {}
