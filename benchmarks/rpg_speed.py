"""RPG speed on this machine: training steps per second and sampling seconds per model (in each
sampling mode) for the zoo's cnn-s/digits collection, for each backbone. Peak memory of sampling
per mode, from 2K to 10M parameters, is benchmarks/memory_scaling.py.

    python benchmarks/rpg_speed.py [--ckpts runs/demo/ckpts] [--steps 30] [--samples 10]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import paramgen as pg
from paramgen.collect import collect

MODES = ("sequential", "partial", "full")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpts", default="runs/bench/cnn-s-digits",
                    help="collection to use (collected there if absent)")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--steps", type=int, default=30, help="timed training steps per backbone")
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--backbones", default="mamba,lstm,transformer,none")
    args = ap.parse_args()

    ckpts = collect("cnn-s", "digits", Path(args.ckpts), n=50, progress=False)
    print(f"cnn-s/digits: {len(ckpts)} checkpoints, {ckpts.num_params} parameters, "
          f"torch threads {torch.get_num_threads()}")
    rows = []
    for kind in args.backbones.split(","):
        gen = pg.RPG(preset=args.preset, backbone=kind)
        gen.fit(ckpts, steps=2, progress=False)          # warm-up: allocations, first calls
        gen = pg.RPG(preset=args.preset, backbone=kind)
        t0 = time.perf_counter()
        gen.fit(ckpts, steps=args.steps, progress=False)
        step_s = (time.perf_counter() - t0) / args.steps
        per_mode = []
        for mode in MODES:
            t0 = time.perf_counter()
            gen.sample(args.samples, seed=0, mode=mode)
            per_mode.append((time.perf_counter() - t0) / args.samples)
        n_params = sum(p.numel() for p in gen.network.parameters())
        rows.append((kind, n_params, 1 / step_s, per_mode))
    print(f"\n{'backbone':12s} {'generator params':>16s} {'train steps/s':>14s} "
          + " ".join(f"{'s/model ' + m:>18s}" for m in MODES))
    for kind, n_params, sps, per_mode in rows:
        print(f"{kind:12s} {n_params:16,d} {sps:14.2f} "
              + " ".join(f"{v:18.2f}" for v in per_mode))


if __name__ == "__main__":
    main()
