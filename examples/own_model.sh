#!/usr/bin/env bash
# Your own model through paramgen's command line: train a generator on a plain folder of
# checkpoints, sample new models, evaluate them. Run from the repository root:
#   bash examples/own_model.sh [WORKDIR]        (a minute or two on a laptop CPU)
set -euo pipefail
W=${1:-runs/own-model}
MODEL=examples/own_model.py:TinyNet   # paramgen imports this file to build TinyNet

# 1. your training code writes plain state dicts: W/ckpts/run0/*.pt, W/ckpts/run1/*.safetensors
python examples/own_model.py "$W/ckpts" --runs 2 --ckpts 10

# 2. (optional) check the folder and keep it as a collection
paramgen import "$W/ckpts" --out "$W/collection"

# 3. train a generator; --model lets --align auto test whether the runs need aligning
paramgen train --ckpts "$W/collection" --out "$W/generator" --model "$MODEL" --steps 300

# 4. sample ten new models, one .safetensors each
paramgen sample --gen "$W/generator" -n 10 --out "$W/samples"

# 5. evaluate them with your model class on your own test tensors (x_test, y_test)
paramgen eval --samples "$W/samples" --ckpts "$W/collection" --model "$MODEL" \
    --data "$W/data.npz" --no-plots
