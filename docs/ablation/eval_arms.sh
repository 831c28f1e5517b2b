#!/bin/bash
# Evaluate every ablation arm on the held-out 512-px crops (bicubic x4 LR, seed 0).
set -e
mkdir -p runs/abl/eval
ev() { name=$1; w=$2; tags=$3; linearsr eval data/eval/val512 --methods linearsr-1,linearsr-ms --weights runs/abl/$w.safetensors --degradation bicubic --seed 0 --tags $tags --device cpu -q --json runs/abl/eval/$name.json; }
ev moe1 moe1 auto
ev moe2 moe2 auto
ev moe4 moe4 auto
ev tag-none none off
ev tag-visual visual visual
ev moe1-tags-off moe1 off
# the sampler-noise check ran the same six evaluations with --seed 1, writing NAME-seed1.json
echo EVAL DONE
