"""Regret of `--input auto` on a mixed held-out set, from three `linearsr eval` JSON reports.

Run eval three times on the same images and degradation (`--degradation mixed`: every image
bicubic and realistic; `--json-out c.json` etc.), with `--input clean`, `--input real` and `--input auto`, then:

    python benchmarks/route_regret.py --clean c.json --real r.json --auto a.json [--out regret.json]

Per LinearSR method and image: the better prior's score (PSNR higher, ST-LPIPS lower), auto's,
and what auto lost against it; the mean loss is the regret. Also the router's own time per image
(measuring the image statistics; the real prior's probe for `sharpening` is a prior pass over at
most 128^2 LR pixels, timed with the rest in bench_peers_speed.py's 1-NFE row) against the
fidelity preset's time, on the same LR images. And the bound no gate can pass on these images:
the best any hard per-image choice could do (hard_choice_bound; `--psnr-target`, default 0.1 dB).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def load(path: str) -> dict[str, dict]:
    report = json.loads(Path(path).read_text())
    return {img["name"]: img for img in report["images"]}, report


def regret(clean: dict, real: dict, auto: dict, method: str) -> dict:
    """Auto's regret, and each constant's (always clean, always real) on the same images: the
    issue's "never above either constant" reads off them."""
    rows, lost = [], {who: ([], []) for who in ("auto", "clean", "real")}
    for name in auto:
        c, r, a = (d[name]["results"].get(method) for d in (clean, real, auto))
        if not (c and r and a):
            continue
        best_psnr, best_lpips = max(c["psnr"], r["psnr"]), min(c["lpips"], r["lpips"])
        for who, got in (("auto", a), ("clean", c), ("real", r)):
            lost[who][0].append(best_psnr - got["psnr"])
            lost[who][1].append(got["lpips"] - best_lpips)
        rows.append({"image": name, "auto": auto[name].get("input_kind"), "why": auto[name].get("input_why"),
                     "psnr_clean": c["psnr"], "psnr_real": r["psnr"], "psnr_auto": a["psnr"],
                     "lpips_clean": c["lpips"], "lpips_real": r["lpips"], "lpips_auto": a["lpips"]})
    means = {who: (statistics.fmean(p), statistics.fmean(q)) for who, (p, q) in lost.items()}
    return {"method": method, "images": len(rows), "regret_psnr_db": means["auto"][0],
            "regret_stlpips": means["auto"][1], "constants": {who: {"regret_psnr_db": means[who][0],
                                                                   "regret_stlpips": means[who][1]}
                                                             for who in ("clean", "real")}, "rows": rows}


def hard_choice_bound(rows: list[dict], psnr_target_db: float) -> dict:
    """What the best possible hard router (clean or real per image, chosen knowing the answers)
    reaches on `rows` (regret()'s): the PSNR oracle's ST-LPIPS regret, the ST-LPIPS oracle's PSNR
    regret, and the least ST-LPIPS regret of any per-image choice whose mean PSNR regret stays
    <= `psnr_target_db` (exact: a 0/1 knapsack over the images whose two measures prefer different
    priors, PSNR costs rounded up to 0.001 dB). Where that least regret is above a target, no gate
    can meet both targets on these images without mixing the priors."""
    n = len(rows)
    if n == 0:
        return {}
    base_lpips, items = 0.0, []  # items: (PSNR lost, ST-LPIPS saved) by taking the ST-LPIPS-better prior
    oracle_lpips = oracle_psnr = 0.0
    for r in rows:
        pc, pr, lc, lr = r["psnr_clean"], r["psnr_real"], r["lpips_clean"], r["lpips_real"]
        by_psnr_lpips = lc if pc >= pr else lr  # the ST-LPIPS of the PSNR-better prior
        by_lpips_psnr = pc if lc <= lr else pr
        d_psnr, d_lpips = max(pc, pr) - by_lpips_psnr, by_psnr_lpips - min(lc, lr)
        oracle_lpips += d_lpips
        oracle_psnr += d_psnr
        if d_lpips > 0:
            base_lpips += d_lpips
            items.append((d_psnr, d_lpips))
    unit = 1e-3
    budget = int(psnr_target_db * n / unit + 1e-9)
    saved = [0.0] * (budget + 1)  # saved[c]: most ST-LPIPS saved at PSNR cost <= c units
    for cost_db, gain in items:
        cost = int(-(-cost_db // unit))  # ceil
        for c in range(budget, cost - 1, -1):
            saved[c] = max(saved[c], saved[c - cost] + gain)
    return {"psnr_oracle": {"regret_psnr_db": 0.0, "regret_stlpips": oracle_lpips / n},
            "stlpips_oracle": {"regret_psnr_db": oracle_psnr / n, "regret_stlpips": 0.0},
            "psnr_target_db": psnr_target_db, "least_stlpips_within_target": (base_lpips - saved[budget]) / n}


def router_time(report: dict, runs: int = 5) -> dict:
    """Median seconds of measuring the evidence of the eval's LR images vs the fidelity preset's."""
    import numpy as np
    import torch

    from linearsr_cli.engine.route import measure
    from linearsr_cli.evaluate.run import MIXED_KINDS, EvalConfig, list_images, load_pair

    cfg_dict = report["config"]
    cfg = EvalConfig(hr_dir=Path(cfg_dict["hr_dir"]), scale=cfg_dict["scale"], seed=cfg_dict["seed"],
                     degradation=cfg_dict["degradation"])
    lrs = []
    for path in list_images(cfg.hr_dir):
        for kind in MIXED_KINDS:
            lrs.append(torch.from_numpy(load_pair(path, path.relative_to(cfg.hr_dir), cfg, kind)[1]))
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        for lr in lrs:
            measure(lr)
        times.append((time.perf_counter() - start) / len(lrs))
    fidelity = [img["results"]["linearsr-1"]["seconds"] for img in report["images"] if "linearsr-1" in img["results"]]
    route = statistics.median(times)
    fid = float(np.median(fidelity)) if fidelity else float("nan")
    return {"router_seconds": route, "fidelity_seconds": fid, "ratio": route / fid}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clean", required=True)
    ap.add_argument("--real", required=True)
    ap.add_argument("--auto", required=True)
    ap.add_argument("--out", default="")
    ap.add_argument("--psnr-target", type=float, default=0.1,
                    help="PSNR regret (dB) within which the best hard choice's least ST-LPIPS regret is reported")
    args = ap.parse_args()
    (clean, _), (real, _), (auto, auto_report) = load(args.clean), load(args.real), load(args.auto)
    methods = [m for m in ("linearsr-1", "linearsr-ms") if any(m in img["results"] for img in auto.values())]
    result = {"methods": [regret(clean, real, auto, m) for m in methods], "time": router_time(auto_report)}
    for m in result["methods"]:
        m["bound"] = bound = hard_choice_bound(m["rows"], args.psnr_target)
        print(f"{m['method']}: regret {m['regret_psnr_db']:.3f} dB PSNR, {m['regret_stlpips']:.4f} ST-LPIPS over {m['images']} images"
              + "".join(f"; always {who} {k['regret_psnr_db']:.3f} dB, {k['regret_stlpips']:.4f}" for who, k in m["constants"].items()))
        print(f"  best hard choice: by PSNR 0 dB, {bound['psnr_oracle']['regret_stlpips']:.4f}; by ST-LPIPS "
              f"{bound['stlpips_oracle']['regret_psnr_db']:.3f} dB, 0; least ST-LPIPS regret within "
              f"{args.psnr_target:g} dB: {bound['least_stlpips_within_target']:.4f}")
        for r in m["rows"]:
            print(f"  {r['image']:<50} auto={r['auto']:<5} PSNR clean {r['psnr_clean']:.2f} real {r['psnr_real']:.2f} auto {r['psnr_auto']:.2f}"
                  f" | ST-LPIPS {r['lpips_clean']:.3f} {r['lpips_real']:.3f} {r['lpips_auto']:.3f}")
    t = result["time"]
    print(f"router {t['router_seconds'] * 1e3:.1f} ms per image = {t['ratio']:.1%} of the fidelity preset ({t['fidelity_seconds']:.2f} s)")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
