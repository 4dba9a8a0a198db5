"""RPG() defaults on a user's own ~1M-parameter model: quality, fit time and peak memory.

A plain MLP that is not in the zoo (64 -> H -> H -> 10 on scikit-learn's digits) is trained with
a plain loop; its last epochs of continued training give the checkpoints. ``RPG()`` with no preset
and no step count then picks its settings from the collection's size (printed), fits, samples,
and every sample is evaluated next to the checkpoints.

    python benchmarks/size_defaults.py                    # ~1.1M parameters, 20 checkpoints
    python benchmarks/size_defaults.py --hidden 128       # a small model, for a quick look
    python benchmarks/size_defaults.py --set train_window=256 --steps 3000   # other settings
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def user_mlp(hidden: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, 10))


def checkpoints(hidden: int, n: int, seed: int) -> tuple[list[dict], tuple]:
    from paramgen.data import load

    x_tr, y_tr, x_te, y_te = load("digits")
    torch.manual_seed(seed)
    model = user_mlp(hidden)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    batches = torch.split(torch.randperm(len(x_tr)), 64)

    def epoch() -> None:
        for idx in torch.split(torch.randperm(len(x_tr)), 64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x_tr[idx]), y_tr[idx]).backward()
            opt.step()

    for _ in range(30):  # converge
        epoch()
    out = []
    per_ckpt = max(1, len(batches) // 2)
    for i in range(n):  # continued training, a checkpoint every half epoch
        for idx in torch.split(torch.randperm(len(x_tr)), 64)[:per_ckpt]:
            opt.zero_grad()
            nn.functional.cross_entropy(model(x_tr[idx]), y_tr[idx]).backward()
            opt.step()
        out.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    return out, (x_te, y_te)


@torch.no_grad()
def accuracy(hidden: int, sd: dict, data: tuple) -> float:
    model = user_mlp(hidden)
    model.load_state_dict(sd)
    x, y = data
    return float((model(x).argmax(1) == y).float().mean() * 100)


def main() -> None:
    from paramgen import CheckpointSet
    from paramgen.commands.train import parse_overrides
    from paramgen.methods import RPG

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=1000)
    p.add_argument("-n", type=int, default=20, help="checkpoints")
    p.add_argument("--samples", type=int, default=10)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--preset", default=None)
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args()
    torch.set_num_threads(1)

    sds, data = checkpoints(args.hidden, args.n, seed=0)
    params = sum(v.numel() for v in sds[0].values())
    orig = [accuracy(args.hidden, sd, data) for sd in sds]
    gen = RPG(preset=args.preset, **parse_overrides(args.set))
    t0, c0 = time.time(), time.process_time()
    gen.fit(CheckpointSet.from_state_dicts(sds), steps=args.steps, progress=True)
    fit_s, fit_cpu = time.time() - t0, time.process_time() - c0
    print(f"chosen settings: preset {gen.preset}; " + gen.settings_summary())
    t0 = time.time()
    samples = gen.sample(args.samples, seed=0)
    sample_s = (time.time() - t0) / args.samples
    acc = [accuracy(args.hidden, sd, data) for sd in samples]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    rows = {"parameters": params, "checkpoints": len(sds),
            "original_mean": mean(orig), "original_min": min(orig), "original_max": max(orig),
            "generated_mean": mean(acc), "generated_min": min(acc), "generated_max": max(acc),
            "gap": mean(orig) - mean(acc), "fit_s": fit_s, "fit_cpu_s": fit_cpu,
            "sample_s_per_model": sample_s, "peak_rss_mb": peak}
    print("| what | value |\n|---|---|")
    for k, v in rows.items():
        print(f"| {k} | {v:.2f} |" if isinstance(v, float) else f"| {k} | {v} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
