#!/bin/bash
# MoE (1/2/4 experts) and TAG (none/tags/visual) ablations: stage 2 from the same stage-1 knee,
# 2400 stage-2 steps in total per arm, bicubic x4, batch 16, 64-px crops.
set -e
KNEE=runs/ship2/knee.safetensors
COMMON="--data data/photos --batch 16 --crop 64 --lr 3e-4 --warmup 20 --degradation bicubic --p-one 0.4 --val-size 256 --val-count 5"
s2() { name=$1; shift; linearsr train stage2 --init $KNEE --out runs/abl/$name $COMMON "$@"; }
s2 visual --experts 1 --steps 2400 --ckpt-every 1200 --tags --tag-kind visual
s2 none   --experts 1 --steps 2400 --ckpt-every 1200 --no-tags
s2 moe1   --experts 1 --steps 2400 --ckpt-every 1200 --tags
s2 moe2   --experts 2 --steps 1200 --ckpt-every 600 --tags
s2 moe4   --experts 4 --steps 600 --ckpt-every 300 --tags
for n in visual none moe1; do linearsr train export runs/abl/$n/expert0 --out runs/abl/$n.safetensors --dtype fp32; done
linearsr train export runs/abl/moe2/expert0 runs/abl/moe2/expert1 --out runs/abl/moe2.safetensors --dtype fp32
linearsr train export runs/abl/moe4/expert{0,1,2,3} --out runs/abl/moe4.safetensors --dtype fp32
echo ABLATIONS DONE
