#!/usr/bin/env bash
# The held-out tables of weights/MODEL_CARD.md for the shipped x4 weights, default command (no --input:
# auto), every peer, seed 0; then --input auto's regret on the mixed set (every crop bicubic and realistic).
set -euo pipefail
L=${LINEARSR:-.venv/bin/linearsr}
for deg in realistic bicubic; do
  $L eval data/eval/val512 --degradation $deg --seed 0 --json-out docs/eval_val512_$deg.json \
    --grid docs/grid_val512_$deg.png > docs/texture/eval_$deg.txt 2>&1
done
for input in clean real auto; do
  $L eval data/eval/val512 --methods linearsr-1,linearsr-ms --input $input --degradation mixed --seed 0 \
    --json-out docs/texture/mixed_$input.json > /dev/null 2>&1
done
${PYTHON:-.venv/bin/python} benchmarks/route_regret.py --clean docs/texture/mixed_clean.json --real docs/texture/mixed_real.json \
  --auto docs/texture/mixed_auto.json --out docs/texture/regret.json > docs/texture/regret.txt
