"""Write the structure expert as the priors alone (a bare expert, no network): what the recipe
ships by default, and the other arm of the ablation "does the DiT in expert 0 add anything over
the prior alone" (export it in place of a trained expert 0).

    python scripts/prior_only_expert.py --init runs/ship/knee.safetensors --prior-clean span \
        --prior-real runs/ship/stage0/ckpt-0002000.safetensors --out runs/ablation/prior-only-e0.safetensors
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from linearsr_cli.train.recipe import write_bare_expert  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--init", required=True, help="a 1-expert stage-1 checkpoint")
    ap.add_argument("--prior-clean", default="span")
    ap.add_argument("--prior-real", default="")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    priors = {k: v for k, v in (("clean", args.prior_clean), ("real", args.prior_real)) if v}
    print(write_bare_expert(Path(args.init), priors, Path(args.out), {"command": " ".join(sys.argv)}))


if __name__ == "__main__":
    main()
