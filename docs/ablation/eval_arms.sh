#!/bin/bash
# Evaluate every ablation arm on the held-out 512-px crops (bicubic x4 LR, seed 0).
set -e
mkdir -p runs/abl/eval
ev() { name=$1; w=$2; shift 2; linearsr eval data/eval/val512 --methods linearsr-1,linearsr-ms --weights runs/abl/$w.safetensors --degradation bicubic --seed 0 "$@" --device cpu -q --json-out runs/abl/eval/$name.json; }
ev moe1 moe1 --tags auto
ev moe2 moe2 --tags auto
ev moe4 moe4 --tags auto
ev tag-none none --tags off
ev tag-visual visual --tag-kind visual
ev moe1-tags-off moe1 --tags off
# the sampler-noise check ran the same six evaluations with --seed 1, writing NAME-seed1.json
echo EVAL DONE
