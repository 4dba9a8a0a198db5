"""How much a beat count moves with the baselines' seed alone (companion to novelty.py).

The noise frontier is the best of a few random noise-added copies per scale, and the mixture
frontier the best of a few seeded pairs, so the same generated models can beat both more or
less often when only the evaluation's seed changes. This re-scores the seed-0 samples of
generators that `benchmarks/novelty.py --steps 1200` saved, with evaluation seeds 0..N-1.

    python benchmarks/novelty_frontier_seeds.py            # after novelty.py has run the settings
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import paramgen as pg
from paramgen.data import load
from paramgen.evaluate import evaluate

sys.path.insert(0, str(Path(__file__).parent))
from rpg_parity import LayerNormMLP  # noqa: E402

# setting (as novelty.py names it) -> checkpoints per run of the collection it trained on
SETTINGS = {"run-state": 10, "run-state, 3x checkpoints": 30, "aligned, checkpoint-state": 10}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs-dir", default="runs")
    ap.add_argument("--key", default="5x10_60_5.0_cpu_1200_20_0",
                    help="novelty.py's cache key of the saved generators ('/' as '_')")
    ap.add_argument("--eval-seeds", type=int, default=5)
    ap.add_argument("--samples", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = load("mnist1d")
    runs = Path(args.runs_dir)
    print(f"{'setting':30s} beat both (of {args.samples}) with evaluation seeds "
          f"0-{args.eval_seeds - 1}")
    for name, per_run in SETTINGS.items():
        folder = runs / "novelty_generators" / args.key / name.replace(" ", "_").replace(",", "")
        if not (folder / "config.json").is_file():
            print(f"{name:30s} no saved generator at {folder}: run novelty.py first")
            continue
        ckpts = pg.CheckpointSet.load(runs / f"novelty_collection_5x{per_run}_60_5_0")
        samples = pg.RPG.from_pretrained(folder).sample(args.samples, seed=0)
        counts = []
        for seed in range(args.eval_seeds):
            rep = evaluate(samples, ckpts, data=(data[2], data[3]), model=LayerNormMLP(),
                           noise_scales=[0.01, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0],
                           plots=False, seed=seed)
            counts.append(sum(rep.beats_both))
        print(f"{name:30s} {counts}", flush=True)


if __name__ == "__main__":
    main()
