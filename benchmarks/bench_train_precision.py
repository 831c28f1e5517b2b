"""Training step time in fp32 vs bf16 autocast on this CPU (issue 12), with the shipped model's
stage-1 settings (RecipeConfig defaults: dim 128, depth 6, 4 stem blocks, batch 16, 64-px crops)
on synthetic batches (no data loading in the timing), one thread per process by default.

Also prints the CPU capability and what `engine.device.cpu_bf16()` decided, so the table says
whether `--precision auto` picks the faster one here.

    python benchmarks/bench_train_precision.py --steps 5 --threads 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from linearsr_cli.engine.device import cpu_bf16, matmul_gflops  # noqa: E402
from linearsr_cli.nn.dit import LinearSR, residual_target  # noqa: E402
from linearsr_cli.train.loop import noisy_sample  # noqa: E402
from linearsr_cli.train.recipe import RecipeConfig  # noqa: E402


def step_times(dtype: torch.dtype | None, steps: int, batch: int, crop: int) -> list[float]:
    """Seconds per optimizer step (forward, backward, AdamW) after one warm-up step."""
    ship = RecipeConfig()
    torch.manual_seed(0)
    model = LinearSR(ship.model.with_experts(1)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    s = ship.model.scale
    hr = torch.rand(batch, 3, crop, crop)
    lr = F.avg_pool2d(hr, s)
    x0 = residual_target(hr, lr, model.cfg)
    times = []
    for i in range(steps + 1):
        start = time.perf_counter()
        t = torch.rand(batch)
        x_t = noisy_sample(x0, torch.randn_like(x0), t)
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            pred = model(x_t, t, lr)
        loss = F.mse_loss(pred.float(), x0)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i:
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=RecipeConfig().stage1.optim.batch_size)
    ap.add_argument("--crop", type=int, default=RecipeConfig().data.crop)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    decision = cpu_bf16()
    report = {
        "cpu_capability": decision.capability,
        "auto_decision": decision.reason,
        "threads": args.threads,
        "matmul_gflops": {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)},
        "step_seconds": {},
    }
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        times = step_times(dtype, args.steps, args.batch, args.crop)
        report["step_seconds"][name] = {"median": statistics.median(times), "runs": times}
    fp32, bf16 = (report["step_seconds"][k]["median"] for k in ("fp32", "bf16"))
    print(f"CPU capability {decision.capability}; auto decision: {decision.reason}")
    print(f"matmul 256^2, {args.threads} thread(s): fp32 {report['matmul_gflops']['fp32']:.1f}, "
          f"bf16 {report['matmul_gflops']['bf16']:.1f} GFLOP/s")
    print(f"training step (batch {args.batch}, {args.crop}-px crops), median of {args.steps}: "
          f"fp32 {fp32:.3f} s, bf16 {bf16:.3f} s (bf16 / fp32 = {bf16 / fp32:.1f}x)")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
