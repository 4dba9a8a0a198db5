"""Does a generator reproduce a collection of an architecture it was not built around?

Trains a small LayerNorm MLP (not in the zoo) on mnist1d with a plain loop, keeps training and
saves checkpoints, fits RPG (or p-diff), samples models and prints original vs generated accuracy
(best / mean / median / min / std), the fit time, and whether any sample equals a checkpoint.

    python benchmarks/rpg_parity.py --preset tiny --steps 1500
    python benchmarks/rpg_parity.py --method pdiff            # p-diff, preset cpu
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import paramgen as pg
from paramgen.data import load


class LayerNormMLP(nn.Module):
    def __init__(self, d_in: int = 40, hidden: tuple[int, int] = (128, 48), classes: int = 10):
        super().__init__()
        self.fc1, self.ln1 = nn.Linear(d_in, hidden[0]), nn.LayerNorm(hidden[0])
        self.fc2, self.ln2 = nn.Linear(hidden[0], hidden[1]), nn.LayerNorm(hidden[1])
        self.out = nn.Linear(hidden[1], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.ln1(self.fc1(x)))
        return self.out(torch.relu(self.ln2(self.fc2(x))))


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def converged(seed: int, epochs: int, x_tr: torch.Tensor, y_tr: torch.Tensor) -> LayerNormMLP:
    """A LayerNormMLP trained from seed ``seed`` for ``epochs`` epochs (Adam 3e-3, batches of 64)."""
    torch.manual_seed(seed)
    model = LayerNormMLP()
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(x_tr)).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x_tr[idx]), y_tr[idx]).backward()
            opt.step()
    return model


def make_collection(n: int, epochs: int, seed: int):
    """Plain loop: train to convergence, then one more pass saving n checkpoints uniformly."""
    x_tr, y_tr, x_te, y_te = load("mnist1d")
    model = converged(seed, epochs, x_tr, y_tr)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    batches = torch.randperm(len(x_tr)).split(64)
    every = max(1, len(batches) // n)
    sds = []
    for i, idx in enumerate(batches):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x_tr[idx]), y_tr[idx]).backward()
        opt.step()
        if i % every == 0 and len(sds) < n:
            sds.append({k: v.clone() for k, v in model.state_dict().items()})
    return sds, (x_te, y_te)


def summary(values: list[float]) -> str:
    v = [100 * a for a in values]
    std = statistics.pstdev(v) if len(v) > 1 else 0.0
    return (f"{max(v):6.1f} {statistics.mean(v):6.1f} {statistics.median(v):6.1f} "
            f"{min(v):6.1f} {std:5.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", choices=["rpg", "pdiff"], default="rpg")
    ap.add_argument("--preset", default=None, help="default: tiny for rpg, cpu for pdiff")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--backbone", default=None)
    ap.add_argument("-n", type=int, default=30, help="checkpoints")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    sds, (x_te, y_te) = make_collection(args.n, args.epochs, args.seed)
    model = LayerNormMLP()
    originals = []
    for sd in sds:
        model.load_state_dict(sd)
        originals.append(accuracy(model, x_te, y_te))
    overrides = {"backbone": args.backbone} if args.backbone else {}
    if args.method == "rpg":
        args.preset = args.preset or "tiny"
        gen = pg.RPG(preset=args.preset, **overrides)
    else:
        args.preset = args.preset or "cpu"
        gen = pg.PDiff(preset=args.preset)
    t0 = time.time()
    gen.fit(pg.CheckpointSet.from_state_dicts(sds), steps=args.steps, seed=args.seed)
    fit_s = time.time() - t0
    t0 = time.time()
    samples = gen.sample(args.samples, seed=args.seed)
    sample_s = time.time() - t0
    generated = []
    for sd in samples:
        model.load_state_dict(sd)
        generated.append(accuracy(model, x_te, y_te))
    equal = sum(any(all(torch.equal(s[k], c[k]) for k in c) for c in sds) for s in samples)
    params = sum(v.numel() for v in sds[0].values() if v.is_floating_point())
    what = (f"RPG preset {args.preset} ({gen.config.backbone}), "
            f"{args.steps or gen.config.steps} steps" if args.method == "rpg"
            else f"p-diff preset {args.preset}")
    print(f"\nLayerNorm MLP on mnist1d, {params} parameters, {len(sds)} checkpoints; {what}")
    print(f"fit {fit_s:.0f} s, sampling {args.samples} models {sample_s:.0f} s")
    print(f"{'':10s} {'best':>6s} {'mean':>6s} {'median':>6s} {'min':>6s} {'std':>5s}")
    print(f"{'original':10s} {summary(originals)}")
    print(f"{'generated':10s} {summary(generated)}")
    print(f"samples equal to a training checkpoint: {equal}")


if __name__ == "__main__":
    main()
