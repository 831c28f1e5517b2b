"""Write the structure expert as it is before stage 2: the stage-1 trunk with the priors attached
and a zeroed head, i.e. exactly the prior (SPAN) at 1-NFE. For the ablation "does the DiT in
expert 0 add anything over the prior alone" (export it in place of the trained expert 0), and to
assemble experiment models from single-expert checkpoints.

    python scripts/prior_only_expert.py --init runs/ship/knee.safetensors --prior-clean span \
        --prior-real runs/ship/stage0/ckpt-0002000.safetensors --out runs/ablation/prior-only-e0.safetensors
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from linearsr_cli.checkpoints import load_weights, save_weights  # noqa: E402
from linearsr_cli.train.recipe import attach_priors  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--init", required=True, help="a 1-expert stage-1 checkpoint")
    ap.add_argument("--prior-clean", default="span")
    ap.add_argument("--prior-real", default="")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    model, info = load_weights(args.init)
    priors = {k: v for k, v in (("clean", args.prior_clean), ("real", args.prior_real)) if v}
    out = attach_priors(model, priors)
    training = {**info.training, "stage": 2, "expert": 0, "note": "prior only: stage-1 trunk, zero head, no stage-2 steps"}
    path = save_weights(args.out, out, provenance={"command": " ".join(sys.argv)}, training=training)
    print(path)


if __name__ == "__main__":
    main()
