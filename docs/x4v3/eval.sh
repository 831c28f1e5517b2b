#!/usr/bin/env bash
# Issue 23: the held-out numbers of the x4v3 candidates, the router and the shipped x4 file.
# Needs data/eval/val512 (scripts/make_val_crops.py) and the converted prior (weights/MODEL_CARD.md).
set -euo pipefail
L=${LINEARSR:-.venv/bin/linearsr}
P=${PYTHON:-.venv/bin/python}
D=docs/x4v3
X4V3=${X4V3:-x4v3-prior.safetensors}
# candidates: x4v3 in the real and texture slots; linearsr-1 --input real = x4v3 alone, linearsr-ms = x4v3 + current experts
$L train revise weights/linearsr-x4.safetensors --out runs/x4v3/x4v3real.safetensors --prior real=$X4V3 --prior texture=$X4V3
$L eval data/eval/val512 --methods realesrgan,linearsr-1,linearsr-ms --weights runs/x4v3/x4v3real.safetensors --input real \
  --degradation realistic --seed 0 --json-out $D/candidates_realistic.json --grid $D/candidates_realistic.png
# the router: refitted on 800 training crops (the jpeg_grid feature; JPEG evidence may only push towards real)
$L train revise weights/linearsr-x4.safetensors --out runs/x4v3/tex.safetensors --prior texture=$X4V3
$L train router runs/x4v3/tex.safetensors --out runs/x4v3/routed.safetensors --count 800 --samples runs/x4v3/router_samples_800.safetensors
# the mixed set (each crop bicubic and realistic, lossless and JPEG-saved): auto against both constants
for input in clean real auto; do
  $L eval data/eval/val512 --methods linearsr-1,linearsr-ms --weights runs/x4v3/routed.safetensors --input $input \
    --degradation mixed --seed 0 --noref '' --json-out $D/mixed_$input.json
done
$P benchmarks/route_regret.py --clean $D/mixed_clean.json --real $D/mixed_real.json --auto $D/mixed_auto.json \
  --out $D/regret.json > $D/regret.txt
# the shipped files: the router's runs fixed to the better constant (real in both kinds of run, at x4 and x2)
$L train revise runs/x4v3/routed.safetensors --out weights/linearsr-x4.safetensors --fixed 1-step=real --fixed multi-step=real
for input in clean real; do
  $L eval data/eval/val512 --scale 2 --methods linearsr-1,linearsr-ms --input $input --degradation mixed --seed 0 --noref '' \
    --json-out $D/x2_mixed_$input.json
done
$L train revise weights/linearsr-x2.safetensors --out runs/x4v3/x2.safetensors --router weights/linearsr-x4.safetensors \
  --fixed 1-step=real --fixed multi-step=real && mv runs/x4v3/x2.safetensors weights/linearsr-x2.safetensors
# the held-out tables of the model card: the default command (no --input), every peer
for deg in realistic bicubic; do
  $L eval data/eval/val512 --degradation $deg --seed 0 --json-out docs/eval_val512_$deg.json \
    --grid docs/grid_val512_$deg.png > $D/eval_$deg.txt 2>&1
done
