"""Would more evidence from the priors' own images help `--input auto`'s gate? A study (issue 23).

Besides `sharpening` (what the real prior makes of the central LR pixels, engine/route.py), the
clean prior is run on the same region, and three candidates are measured:

- `clean_sharpening`: route.sharpening of the clean prior's image;
- `prior_ratio`: sharpening - clean_sharpening (how much more the real prior smooths);
- `prior_gap`: log of the priors' mean squared disagreement over bicubic's Laplacian energy
  (they disagree where the clean prior draws artefacts as detail).

Gates are fitted with train/router.fit_gate on a `train router --samples` file (5-fold CV regret on
the fitting crops), then scored on the held-out mixed set from its `eval --input clean|real` JSON
(the 1-NFE and perceptual rows, hard choices):

    python scripts/gate_evidence_study.py --samples S --clean docs/x4v3/mixed_clean.json \\
        --real docs/x4v3/mixed_real.json [--weights weights/linearsr-x4.safetensors] [--trees]

`--trees` also fits gradient-boosted trees (scikit-learn's HistGradientBoostingClassifier;
scikit-learn comes with sentence-transformers, the tag encoder's package), weighted by |gain| and monotone in the JPEG
evidence like the gate, on the same feature sets and on all of them: can a gate that is not linear
use the evidence better?
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.route_regret import regret  # noqa: E402
from linearsr_cli.config import TileConfig  # noqa: E402
from linearsr_cli.engine.device import plan_device  # noqa: E402
from linearsr_cli.engine.route import (  # noqa: E402
    FEATURES,
    MONOTONE,
    laplacian_energy,
    measure,
    probe_region,
    sharpening,
)
from linearsr_cli.engine.upscaler import Upscaler  # noqa: E402
from linearsr_cli.evaluate.run import MIXED_KINDS, EvalConfig, list_images, load_pair, saved_quality  # noqa: E402
from linearsr_cli.nn.dit import bicubic_upsample  # noqa: E402
from linearsr_cli.train.router import fit_gate, load_samples, routing_regret  # noqa: E402

GATES = (("sharpening", "jpeg"), ("sharpening", "jpeg", "clean_sharpening"), ("sharpening", "jpeg", "prior_ratio"),
         ("sharpening", "jpeg", "prior_gap"), ("sharpening", "jpeg", "clean_sharpening", "prior_gap"))


def evidence(priors: dict, lr: torch.Tensor, quality: int | None) -> dict[str, float]:
    """The shipped features and the candidates of one LR image (3, h, w)."""
    region = probe_region(lr.float())
    with torch.no_grad():
        images = {name: priors[name](region[None])[0].float().clamp(0.0, 1.0) for name in ("clean", "real")}
    scale = images["real"].shape[-1] // region.shape[-1]
    base_energy = laplacian_energy(bicubic_upsample(region[None], scale)[0])
    gap = float((images["clean"] - images["real"]).pow(2).mean())
    row = dict(zip(FEATURES, measure(lr.float(), quality).vector().tolist(), strict=True))
    row["sharpening"] = sharpening(region, images["real"])
    row["clean_sharpening"] = sharpening(region, images["clean"])
    row["prior_ratio"] = row["sharpening"] - row["clean_sharpening"]
    row["prior_gap"] = math.log((gap + 1e-7) / (base_energy + 1e-6))
    return row


def matrix(rows: list[dict], names: tuple[str, ...]) -> np.ndarray:
    return np.array([[r[n] for n in names] for r in rows], dtype=np.float64)


FitPredict = Callable[[np.ndarray, np.ndarray, np.ndarray, int], np.ndarray]  # (x_fit, gain_fit, rows, seed) -> picks


def linear_gate(monotone: np.ndarray) -> FitPredict:
    """The shipped kind of gate (train/router.fit_gate) on the given columns."""
    def fit_predict(x_fit: np.ndarray, g_fit: np.ndarray, rows: np.ndarray, seed: int) -> np.ndarray:
        w, b, mean, scale = fit_gate(x_fit, g_fit, monotone=monotone, unused=np.zeros(len(monotone), bool))
        return ((rows - mean) / scale) @ w + b > 0

    return fit_predict


def tree_gate(monotone: np.ndarray) -> FitPredict:
    """Gradient-boosted trees weighted by |gain|, monotone (non-decreasing towards real) where the gate is."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    def fit_predict(x_fit: np.ndarray, g_fit: np.ndarray, rows: np.ndarray, seed: int) -> np.ndarray:
        model = HistGradientBoostingClassifier(max_depth=3, max_iter=200, learning_rate=0.05, monotonic_cst=monotone.astype(int).tolist(),
                                               l2_regularization=1.0, min_samples_leaf=20, random_state=seed)
        model.fit(x_fit, (g_fit > 0).astype(int), sample_weight=np.abs(g_fit))
        return model.predict_proba(rows)[:, 1] > 0.5

    return fit_predict


def cv_regret(fit_predict: FitPredict, x: np.ndarray, gain: np.ndarray, seed: int = 0) -> float:
    """5-fold CV routing regret (dB), the folds (and the fit's randomness) drawn from `seed`."""
    order = np.random.default_rng(seed).permutation(len(gain))
    return float(np.mean([routing_regret(fit_predict(x[rest], gain[rest], x[fold], seed), gain[fold])
                          for fold in np.array_split(order, 5) for rest in [np.setdiff1d(order, fold)]]))


def report(label: str, names: tuple[str, ...], fit_predict: FitPredict, train: list[dict], gain: np.ndarray,
           held: list[dict], clean: dict, real: dict, *, spread: bool = False) -> None:
    """One gate's line: CV regret on the fitting crops, hard-choice regret on the held-out mixed set
    (benchmarks/route_regret.regret on the runs its picks select); `spread`: the CV regret over 5 seeds."""
    x = matrix(train, names)
    picks = fit_predict(x, gain, matrix(held, names), 0)
    chosen = {r["name"]: (real if pick else clean)[r["name"]] for r, pick in zip(held, picks, strict=True)}
    scores = [regret(clean, real, chosen, m) for m in ("linearsr-1", "linearsr-ms")]
    print(f"{label:<45} CV regret {cv_regret(fit_predict, x, gain):.3f} dB | held-out 1-NFE {scores[0]['regret_psnr_db']:.3f} dB / "
          f"{scores[0]['regret_stlpips']:.4f}, perceptual (hard) {scores[1]['regret_psnr_db']:.3f} dB / {scores[1]['regret_stlpips']:.4f}")
    if spread:
        runs = [cv_regret(fit_predict, x, gain, seed) for seed in range(5)]
        print(f"      CV regret over 5 fold splits (and seeds): {min(runs):.3f}-{max(runs):.3f} dB, mean {np.mean(runs):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=Path, required=True)
    ap.add_argument("--clean", type=Path, required=True, help="eval JSON, --degradation mixed --input clean")
    ap.add_argument("--real", type=Path, required=True, help="the same with --input real")
    ap.add_argument("--weights", type=Path, default=Path(__file__).resolve().parents[1] / "weights" / "linearsr-x4.safetensors")
    ap.add_argument("--trees", action="store_true", help="also gradient-boosted trees (needs scikit-learn)")
    ap.add_argument("--hr", type=Path, default=Path(__file__).resolve().parents[1] / "data" / "eval" / "val512")
    args = ap.parse_args()
    up = Upscaler.from_weights(args.weights, plan_device("cpu", "auto"), TileConfig())
    priors = up.model.priors
    samples = load_samples(args.samples)
    train = [evidence(priors, s.lr, s.jpeg_quality) for s in samples]
    gain = np.array([s.gain for s in samples])
    cfg = EvalConfig(hr_dir=args.hr, scale=up.scale, seed=0, degradation="mixed")
    held = []
    for path in list_images(args.hr):
        for kind in MIXED_KINDS:
            lr = torch.from_numpy(load_pair(path, path.relative_to(args.hr), cfg, kind)[1])
            held.append({**evidence(priors, lr, saved_quality(kind)), "name": f"{path.name}#{kind}"})
    clean = {i["name"]: i for i in json.loads(args.clean.read_text())["images"]}
    real = {i["name"]: i for i in json.loads(args.real.read_text())["images"]}
    print(f"{len(gain)} fitting crops; always clean {routing_regret(np.zeros(len(gain), bool), gain):.3f} dB, "
          f"always real {routing_regret(np.ones(len(gain), bool), gain):.3f} dB")
    for names in GATES:
        report("+".join(names), names, linear_gate(monotone_mask(names)), train, gain, held, clean, real,
               spread=names == GATES[0])
    if args.trees:
        everything = (*FEATURES, "prior_gap")
        for names in (*GATES, everything):
            report("trees " + "+".join(names), names, tree_gate(monotone_mask(names)), train, gain, held, clean, real,
                   spread=names == everything)


def monotone_mask(names: tuple[str, ...]) -> np.ndarray:
    return np.array([n in MONOTONE for n in names])


if __name__ == "__main__":
    main()
