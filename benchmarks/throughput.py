"""Throughput against the machine: FLOPs of an RPG training step and of sampling, achieved FLOP/s
as a share of this CPU's measured matmul throughput (fp32 and bf16), and bf16 autocast training
against fp32 (speed and the quality of the samples).

    python benchmarks/throughput.py [--collection cnn-s/digits] [--fit-steps 600]
        [--timed-steps 20] [--samples 10] [--matmul 1024] [--reps 5]

* **matmul**: an n x n x n matmul (2 n^3 FLOPs) repeated on one thread, fp32 and bf16 (best of
  ``--reps`` rounds of 0.2 CPU-s); the rate per CPU-second (user + sys) is what one core gives
  when it is ours, the rate per wall-second what we got on this shared machine.
* **train step**: ``torch.utils.flop_counter.FlopCounterMode`` around a one-step ``fit`` of
  ``RPG(preset="cpu")`` (forward + backward); then ``--timed-steps`` steps timed one by one (the
  engine's callback), the median step after the first two. Once with ``autocast="off"`` (fp32)
  and once with ``autocast="bf16"``.
* **sampling**: FLOPs and time of drawing ``--samples`` models with the preset's sampler.
* **quality**: a generator fitted ``--fit-steps`` steps in each precision (saved under --root and
  reused; the fp32 one is the one benchmarks/sampling.py fits), mean test accuracy of
  ``--samples`` samples, and the checkpoints' mean.

One thread throughout. Times were taken on a shared machine: CPU seconds are the steadier figure.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sampling import accuracies, cpu_seconds, fitted_generator, markdown, table

PRECISIONS = {"off": torch.float32, "bf16": torch.bfloat16}


def matmul_rate(dtype: torch.dtype, n: int, reps: int) -> tuple[float, float]:
    """FLOP per CPU-second and per wall-second of an n^3 matmul in ``dtype``: the best of
    ``reps`` rounds, each as many matmuls as fill 0.2 CPU-seconds."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(dtype)
    b = torch.randn(n, n, generator=g).to(dtype)
    a @ b                                                      # warm-up: kernels, allocations
    best_cpu, best_wall = 0.0, 0.0
    for _ in range(reps):
        count, w0, c0 = 0, time.perf_counter(), cpu_seconds()
        while cpu_seconds() - c0 < 0.2:
            a @ b
            count += 1
        flops = 2 * n ** 3 * count
        best_cpu = max(best_cpu, flops / (cpu_seconds() - c0))
        best_wall = max(best_wall, flops / (time.perf_counter() - w0))
    return best_cpu, best_wall


def count_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def train_step_cost(ckpts, keys: str | None, autocast: str,
                    timed_steps: int) -> tuple[int, float, float]:
    """FLOPs of one training step, median CPU and wall seconds per step."""
    import paramgen as pg

    extra = {"keys": keys} if keys else {}
    def make():
        return pg.RPG(preset="cpu", autocast=autocast, **extra)

    flops = count_flops(lambda: make().fit(ckpts, steps=1, seed=0, progress=False))
    stamps: list[tuple[float, float]] = []
    make().fit(ckpts, steps=timed_steps, seed=0, progress=False,
               callback=lambda done, loss: stamps.append((cpu_seconds(), time.perf_counter())))
    cpu = [b[0] - a[0] for a, b in itertools.pairwise(stamps[1:])]
    wall = [b[1] - a[1] for a, b in itertools.pairwise(stamps[1:])]
    return flops, statistics.median(cpu), statistics.median(wall)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--collection", default="cnn-s/digits")
    ap.add_argument("--fit-steps", type=int, default=600)
    ap.add_argument("--timed-steps", type=int, default=20)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--ckpts", type=int, default=20)
    ap.add_argument("--matmul", type=int, default=1024, help="matmul size n (n x n x n)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--root", default="runs/sampling")
    ap.add_argument("--out", default="runs/sampling/results")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from paramgen.diffusion import sampling_plan
    from paramgen.methods.rpg import RPGConfig

    peak = {name: matmul_rate(dtype, args.matmul, args.reps) for name, dtype in PRECISIONS.items()}
    print(f"matmul {args.matmul}^3, one thread, best of {args.reps}: "
          + ", ".join(f"{name} {c / 1e9:.1f} GFLOP/cpu-s ({w / 1e9:.1f} GFLOP/wall-s)"
                      for name, (c, w) in peak.items()), flush=True)
    sampler, steps = sampling_plan(RPGConfig.from_preset("cpu"))
    root = Path(args.root)
    spec = args.collection
    keys = spec.partition(":")[2] or None
    headers = ["precision", "what", "GFLOP", "cpu s", "wall s", "GFLOP/cpu-s",
               "% of fp32 matmul", "% of bf16 matmul"]
    rows: list[list[str]] = []
    quality: list[list[str]] = []
    # bf16 first: its fit is this script's own, the fp32 generator is sampling.py's (fitted
    # meanwhile when both run at once).
    for autocast in ("bf16", "off"):
        ckpts, _, _ = fitted_generator(spec, root, args.fit_steps, args.ckpts)
        flops, cpu, wall = train_step_cost(ckpts, keys, autocast, args.timed_steps)
        # autocast "auto" is off on a CPU: the fp32 generator is the one sampling.py fitted.
        overrides = {} if autocast == "off" else {"autocast": autocast}
        ckpts, gen, fit = fitted_generator(spec, root, args.fit_steps, args.ckpts, overrides)
        s_flops = count_flops(lambda: gen.sample(args.samples, seed=0))
        w0, c0 = time.perf_counter(), cpu_seconds()
        sds = gen.sample(args.samples, seed=0)
        s_wall, s_cpu = time.perf_counter() - w0, cpu_seconds() - c0
        for what, f, c, w in (("train step", flops, cpu, wall),
                              (f"sample {args.samples} ({sampler} {steps})", s_flops, s_cpu,
                               s_wall),
                              (f"one {sampler} step of those", s_flops / steps, s_cpu / steps,
                               s_wall / steps)):
            rate = f / max(c, 1e-9)
            rows.append([autocast if autocast == "bf16" else "fp32", what, f"{f / 1e9:.3f}",
                         f"{c:.3f}", f"{w:.3f}", f"{rate / 1e9:.2f}",
                         f"{100 * rate / peak['off'][0]:.0f}", f"{100 * rate / peak['bf16'][0]:.0f}"])
            print(table(headers, [rows[-1]]).splitlines()[-1], flush=True)
        accs = accuracies(sds, ckpts.info)
        originals = accuracies(ckpts, ckpts.info)
        fit_text = "-" if fit is None else f"{fit[0]:.0f} / {fit[1]:.0f}"
        quality.append([autocast if autocast == "bf16" else "fp32", str(args.fit_steps),
                        fit_text, f"{sum(originals) / len(originals):.2f}",
                        f"{sum(accs) / len(accs):.2f}", f"{min(accs):.2f}", f"{max(accs):.2f}"])
    q_headers = ["precision", "fit steps", "fit wall / cpu s", "checkpoints mean",
                 f"samples mean ({sampler} {steps})", "min", "max"]
    head = (f"matmul {args.matmul}^3 one thread: "
            + ", ".join(f"{n if n == 'bf16' else 'fp32'} {c / 1e9:.1f} GFLOP/cpu-s "
                        f"({w / 1e9:.1f} per wall-s)" for n, (c, w) in peak.items()))
    print("\n" + head + "\n\n" + table(headers, rows) + "\n\n" + table(q_headers, quality))
    from paramgen import io

    io.write_text(Path(args.out) / "throughput.md", "\n\n".join(
        [head, markdown(headers, rows), markdown(q_headers, quality)]) + "\n")
    print(f"wrote {Path(args.out) / 'throughput.md'}")


if __name__ == "__main__":
    main()
