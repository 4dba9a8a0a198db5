"""Which block mapping relocates a source collection best (IGPG's layouts outside the zoo)?

    python benchmarks/igpg_block_rules.py --gen runs/igpg_bench/generator --zoo runs/igpg_zoo

For every pair of digits depths (target, source) of the resmlp zoo, the source collection's run
means are relocated onto the target layout (no VQ-VAE, no prior: benchmarks/igpg.py's "borrowed
run means") with three rules for block i of a depth-D target from a depth-S source: "relative"
(round(i (S-1)/(D-1))), "first" (min(i, S-1): keep the first blocks) and "last" (align the last
blocks). Prints the mean test accuracy per rule for shallower and for deeper targets, then the
held-out targets of benchmarks/igpg.py with each rule.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import paramgen as pg
from paramgen.evaluation.core import build_model, load_data_for, predictions, score
from paramgen.methods.igpg import transfer

sys.path.insert(0, str(Path(__file__).parent))
from igpg import borrowed_means  # noqa: E402


def _parts(key, target, source):
    p = transfer.split_block(key)
    if p is None or p[0] not in source:
        return None
    return p[0], p[1], p[2], target.get(p[0], p[1] + 1), source[p[0]]


def relative(key, target, source):
    q = _parts(key, target, source)
    if q is None:
        return key
    pre, i, rest, d, s = q
    return f"{pre}.{min(s - 1, round(i * (s - 1) / (d - 1)) if d > 1 else 0)}.{rest}"


def first(key, target, source):
    q = _parts(key, target, source)
    return key if q is None else f"{q[0]}.{min(q[1], q[4] - 1)}.{q[2]}"


def last(key, target, source):
    q = _parts(key, target, source)
    if q is None:
        return key
    pre, i, rest, d, s = q
    return f"{pre}.{max(0, min(s - 1, i - (d - s)))}.{rest}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gen", required=True)
    p.add_argument("--zoo", required=True)
    args = p.parse_args()
    torch.set_num_threads(1)
    gen = pg.IGPG.from_pretrained(args.gen)
    zoo = list(gen.zoo)

    def accuracy(depth: int, data: str, source_depth: int) -> float:
        s = pg.CheckpointSet.load(Path(args.zoo) / f"resmlp{depth}_{data}")
        like = build_model(s.info).state_dict()
        x, y = load_data_for(s.info)
        gen.zoo = [e for e in zoo if e.dataset == data
                   and e.info["model_kwargs"]["depth"] == source_depth]
        try:
            sds = borrowed_means(gen, like, data)
        finally:
            gen.zoo = zoo
        return float(score(predictions(sds, build_model(s.info), x), y).mean())

    rule_of = transfer.map_key
    pairs = [(d, s) for d in (1, 2, 3, 4) for s in (1, 2, 3, 4) if d != s]
    try:
        for name, rule in (("relative", relative), ("first", first), ("last", last)):
            transfer.map_key = rule
            acc = {(d, s): accuracy(d, "digits", s) for d, s in pairs}
            shallower = [v for (d, s), v in acc.items() if d < s]
            deeper = [v for (d, s), v in acc.items() if d > s]
            held = {"resmlp-3 on mnist1d from depth 4": accuracy(3, "mnist1d", 4),
                    "resmlp-6 on digits from depth 4": accuracy(6, "digits", 4)}
            print(f"{name}: shallower targets {100 * sum(shallower) / len(shallower):.1f}%, "
                  f"deeper targets {100 * sum(deeper) / len(deeper):.1f}% "
                  f"(digits, target<-source: "
                  + ", ".join(f"{d}<-{s} {100 * v:.1f}" for (d, s), v in acc.items())
                  + "); held out: "
                  + ", ".join(f"{k} {100 * v:.1f}" for k, v in held.items()), flush=True)
    finally:
        transfer.map_key = rule_of


if __name__ == "__main__":
    main()
