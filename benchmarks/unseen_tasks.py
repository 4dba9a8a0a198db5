"""Models for tasks never seen: train task-conditioned RPG on the seen tasks of a task grid and
generate for the unseen ones (RPG paper §4, Tables 9, 10, 14).

    paramgen collect --tasks all --data digits --out runs/grid-digits
    python benchmarks/unseen_tasks.py --grid runs/grid-digits [--steps N] [--samples 10]

Prints, per unseen task, the directly trained model's balanced accuracy next to the generated
best / mean / std over --samples models, the mean over all unseen tasks, and the flipped-embedding
check: every bit of a seen task inverted gives a new task, whose generated models must stay
accurate rather than fall to chance.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import paramgen as pg
from paramgen.commands.train import parse_overrides, split_tasks
from paramgen.data import load, relabel
from paramgen.evaluation.core import build_model, load_into
from paramgen.metrics import balanced_accuracy, predict


def generated_scores(gen, info, x, y, bits: str, n: int, seed: int,
                     steps: int | None = None) -> list[float]:
    model = build_model(info)
    yb = relabel(y, bits)
    out = []
    for sd in gen.sample(n, condition=bits, seed=seed, mode="full", steps=steps):
        out.append(balanced_accuracy(predict(load_into(model, sd), x), yb))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", required=True, help="task-grid CheckpointSet folder")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--holdout", type=float, default=0.1)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--max-unseen", type=int, default=None, help="evaluate at most this many")
    ap.add_argument("--flipped", type=int, default=10, help="seen tasks to flip")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--save", default=None, metavar="DIR", help="save the trained generator")
    ap.add_argument("--load", default=None, metavar="DIR",
                    help="evaluate a generator saved by --save (same grid and --seed) instead "
                         "of training one")
    ap.add_argument("--sample-steps", type=int, default=None, help="DDIM steps when sampling")
    args = ap.parse_args()

    grid = pg.CheckpointSet.load(args.grid)
    info = grid.info
    tasks = [grid.provenance(i)["task"] for i in range(len(grid))]
    seen, unseen = split_tasks(tasks, args.holdout, args.seed)
    keep = [i for i, t in enumerate(tasks) if t in set(seen)]
    t0 = time.time()
    if args.load:
        gen = pg.RPG.from_pretrained(args.load)
    else:
        gen = pg.RPG(preset=args.preset, **parse_overrides(args.set))
        gen.fit(grid.subset(keep), steps=args.steps, seed=args.seed)
        if args.save:
            gen.save_pretrained(args.save)
    fit_s = time.time() - t0

    _, _, x, y = load(info["data"])
    direct = {}
    for i, t in enumerate(tasks):
        direct.setdefault(t, []).append(grid.metrics(i)["balanced_accuracy"])
    rows = []
    t0 = time.time()
    for bits in unseen[:args.max_unseen]:
        scores = generated_scores(gen, info, x, y, bits, args.samples, args.seed,
                                  args.sample_steps)
        rows.append((bits, max(direct[bits]), max(scores), statistics.mean(scores),
                     statistics.pstdev(scores)))
    sample_s = time.time() - t0
    print(f"\ntask-conditioned RPG ({args.preset}, {gen.config.backbone}) on {args.grid}: "
          f"{len(seen)} seen tasks ({len(keep)} checkpoints), {len(unseen)} unseen; "
          f"fit {fit_s:.0f} s, sampling {sample_s:.0f} s")
    print(f"\n{'unseen task':12s} {'original':>9s} {'gen best':>9s} {'gen mean':>9s} "
          f"{'gen std':>8s}")
    for bits, orig, best, mean, std in rows:
        print(f"{bits:12s} {100 * orig:9.1f} {100 * best:9.1f} {100 * mean:9.1f} {100 * std:8.2f}")
    m_orig = statistics.mean(r[1] for r in rows)
    m_gen = statistics.mean(r[3] for r in rows)
    worst = min(r[3] for r in rows)
    print(f"{'mean':12s} {100 * m_orig:9.1f} {'':9s} {100 * m_gen:9.1f}")
    print(f"gap (original - generated mean): {100 * (m_orig - m_gen):.2f} points; "
          f"worst unseen task's generated mean: {100 * worst:.1f}")

    print("\nflipped embeddings (RPG Table 10): every bit of a seen task inverted")
    print(f"{'seen task':12s} {'gen mean':>9s} {'flipped':12s} {'gen mean':>9s} {'in grid':>8s}")
    g = torch.Generator().manual_seed(args.seed)
    picks = torch.randperm(len(seen), generator=g)[:args.flipped].tolist()
    for j in picks:
        bits = seen[j]
        flipped = "".join("1" if b == "0" else "0" for b in bits)
        a = statistics.mean(generated_scores(gen, info, x, y, bits, 3, args.seed))
        b = statistics.mean(generated_scores(gen, info, x, y, flipped, 3, args.seed))
        where = "seen" if flipped in set(seen) else "unseen"
        print(f"{bits:12s} {100 * a:9.1f} {flipped:12s} {100 * b:9.1f} {where:>8s}")


if __name__ == "__main__":
    main()
