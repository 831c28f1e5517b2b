#!/usr/bin/env bash
# Choose the texture prior: the ESGF knee of each texture run, as the 'texture' prior of the
# shipped x4 file, scored on the realistic held-out crops (the perceptual preset uses it).
set -euo pipefail
L=${LINEARSR:-.venv/bin/linearsr}
J=${JSON_FLAG:---json-out}
for run in ${RUNS:-gan gan-distill}; do
  $L select-knee runs/tex/$run $J docs/texture/knee_$run.json --plot docs/texture/knee_$run.png > /dev/null
  knee=$(python3 -c "import json;print(json.load(open('docs/texture/knee_$run.json'))['knee']['path'])")
  last=$(ls runs/tex/$run/ckpt-*.safetensors | grep -v state | tail -1)
  for which in knee last; do
    ck=$([ $which = knee ] && echo $knee || echo $last)
    $L train revise weights/linearsr-x4.safetensors --out runs/cand/$run-$which.safetensors --prior texture=$ck > /dev/null
    $L eval data/eval/val512 --weights runs/cand/$run-$which.safetensors --methods linearsr-ms --input real \
      --degradation realistic --seed 0 $J docs/texture/eval_$run-$which.json > /dev/null 2>&1
    python3 -c "
import json; d=json.load(open('docs/texture/eval_$run-$which.json'))['mean']['linearsr-ms']
print('$run $which', '$ck', {k: round(v, 4) for k, v in d.items() if v is not None})"
  done
done
