"""Throughput against the machine: FLOPs of RPG's training step and of sampling, achieved FLOP/s
as a share of this CPU's measured matmul throughput (fp32 and bf16), and what a whole fit and a
sample would take at 100% of it.

    python benchmarks/throughput.py [--sizes 1e4,1e6,1.1e7] [--timed-steps 12]
        [--sample-tokens 512] [--matmul 1024] [--reps 5]
    python benchmarks/throughput.py --quality [--collection cnn-s/digits] [--fit-steps 600]
        [--timed-steps 20] [--samples 10]

**Per model size** (the default): random checkpoints of the MLP closest to each size
(benchmarks/memory_scaling.py's), as many as a training step draws (the chosen
``batch_size``: with fewer checkpoints every step would be smaller than a real fit's), and the
settings ``RPG()`` chooses for that many generated values (methods/rpg/choice.py: the size rule). For each, in fp32 and bf16 autocast:

* **train step**: FLOPs of one step (``FlopCounterMode`` around a one-step fit), split by module:
  the denoiser (``Denoiser1D``), the backbone (everything else the network runs: the recurrent
  stack, its head; the position table is a lookup, 0 FLOPs), then ``--timed-steps`` steps timed
  (median CPU-s after the first two). The whole fit is the rule's step count times that median:
  **extrapolated**, not run; "at 100%" is its FLOPs over the matmul rate.
* **AdamW**: the optimizer's share, which the FLOP counter does not see: one AdamW step over a
  parameter set of the generator's size, timed alone (elementwise, memory-bound; the learnable
  position table is most of it above 50K values).
* **sampling**: one model with the default sampler (partial mode), FLOPs and time of its first
  ``--sample-tokens`` tokens (or all), extrapolated to the whole model by token count; FLOPs per
  generated value.

**--quality**: the earlier comparison on one collection: bf16 autocast training against fp32
(speed and the quality of the samples).

* **matmul**: an n x n x n matmul (2 n^3 FLOPs) repeated on one thread, fp32 and bf16 (best of
  ``--reps`` rounds of 0.2 CPU-s); the rate per CPU-second (user + sys) is what one core gives
  when it is ours, the rate per wall-second what we got on this shared machine.
* **train step** (--quality): ``torch.utils.flop_counter.FlopCounterMode`` around a one-step ``fit`` of
  ``RPG(preset="cpu")`` (forward + backward); then ``--timed-steps`` steps timed one by one (the
  engine's callback), the median step after the first two. Once with ``autocast="off"`` (fp32)
  and once with ``autocast="bf16"``.
* **sampling** (--quality): FLOPs and time of drawing ``--samples`` models with the preset's
  sampler.
* **quality** (--quality): a generator fitted ``--fit-steps`` steps in each precision (saved under --root and
  reused; the fp32 one is the one benchmarks/sampling.py fits), mean test accuracy of
  ``--samples`` samples, and the checkpoints' mean.

One thread throughout. Times were taken on a shared machine: CPU seconds are the steadier figure.
"""

from __future__ import annotations

import argparse
import itertools
import json
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


def flops_by_module(fn) -> tuple[int, dict[str, int]]:
    """Total FLOPs of ``fn()`` and their split: denoiser, backbone (every other module-attributed
    FLOP: the recurrent stack and its head), other (outside any module)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    total = int(counter.get_total_flops())
    split = {"denoiser": 0, "backbone": 0}
    for name, ops in counter.get_flop_counts().items():
        if name == "Global" or "." in name:  # roots only: children are inside their root
            continue
        split["denoiser" if name.startswith("Denoiser") else "backbone"] += sum(ops.values())
    split["other"] = total - split["denoiser"] - split["backbone"]
    return total, split


def adamw_seconds(numel: int, reps: int = 3) -> float:
    """CPU seconds of one AdamW step over ``numel`` parameters (the engine's optimizer; best of
    ``reps`` after a warm-up)."""
    p = torch.nn.Parameter(torch.zeros(numel))
    p.grad = torch.randn(numel) * 1e-3
    opt = torch.optim.AdamW([p], lr=1e-3, weight_decay=1e-5)
    opt.step()
    best = float("inf")
    for _ in range(reps):
        c0 = cpu_seconds()
        opt.step()
        best = min(best, cpu_seconds() - c0)
    return best


def size_cost(target: int, autocast: str, timed_steps: int, sample_tokens: int) -> dict:
    """One size in one precision: train-step and sampling FLOPs, split and time (see above)."""
    import paramgen as pg
    from memory_scaling import _checkpoints

    from paramgen.methods.rpg.choice import CollectionFacts, choose_config

    facts = CollectionFacts.of(_checkpoints(target, 1, 0))
    cfg = choose_config(None, None, {"autocast": autocast}, facts).config
    # As many checkpoints as a step draws: with fewer, every step is smaller than a real fit's.
    ckpts = pg.CheckpointSet.from_state_dicts(_checkpoints(target, cfg.batch_size, 0))
    step_flops, step_split = flops_by_module(
        lambda: pg.RPG(autocast=autocast).fit(ckpts, steps=1, seed=0, progress=False))
    stamps: list[float] = []
    gen = pg.RPG(autocast=autocast)
    gen.fit(ckpts, steps=timed_steps, seed=0, progress=False,
            callback=lambda done, loss: stamps.append(cpu_seconds()))
    step_cpu = statistics.median(b - a for a, b in itertools.pairwise(stamps[1:]))
    params = sum(p.numel() for p in gen.network.parameters())
    table_rows = (gen.network.position.table.numel()
                  if gen.network.position.table is not None else 0)
    # Sampling: the first blocks of one model, extrapolated by token count.
    tokens_total = gen.tokenizer.num_tokens
    blocks = gen._token_blocks(1, None, 0, None, None, None, None, False)
    done, s_cpu = 0, 0.0
    s_flops, s_split = 0, {"denoiser": 0, "backbone": 0, "other": 0}
    while done < min(sample_tokens, tokens_total):
        c0 = cpu_seconds()
        with torch.no_grad():  # as in gen.sample
            f, split = flops_by_module(lambda: next(blocks))
        s_cpu += cpu_seconds() - c0
        s_flops += f
        s_split = {k: s_split[k] + split[k] for k in s_split}
        done = min(tokens_total, done + max(1, cfg.partial_batch))
    blocks.close()
    scale = tokens_total / done
    return dict(target=target, values=facts.generated_values, autocast=autocast,
                tokens=tokens_total, steps=cfg.steps, window=cfg.train_window,
                positions=cfg.position_embedding, step_flops=step_flops, step_split=step_split,
                step_cpu=step_cpu, generator_params=params, position_table=table_rows,
                adamw_cpu=adamw_seconds(params), sample_flops=s_flops * scale,
                sample_split={k: v * scale for k, v in s_split.items()},
                sample_cpu=s_cpu * scale, sampled_tokens=done, sampler=cfg.sampler,
                sampling_steps=cfg.sampling_steps)


def fmt_time(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.1f} s"


SIZE_HEADERS = ["values", "prec", "RPG() step", "GFLOP/step (den/bb)", "cpu s/step",
                "% of matmul", "AdamW cpu s", "fit: steps, at 100% / extrapolated",
                "FLOP/value sampled (den/bb)", "sample % of matmul",
                "sample 1: at 100% / extrapolated"]


def size_row(r: dict, peak: dict) -> list[str]:
    rate = peak["off" if r["autocast"] == "off" else "bf16"][0]
    sp, ss = r["step_split"], r["sample_split"]
    per_value = r["sample_flops"] / r["values"]
    setting = (f"window {r['window']}, {r['positions']}" if r["window"]
               else f"whole, {r['positions']}")
    return [f"{r['values']:,}", "fp32" if r["autocast"] == "off" else "bf16", setting,
            f"{r['step_flops'] / 1e9:.2f} ({sp['denoiser'] / 1e9:.2f}/{sp['backbone'] / 1e9:.2f})",
            f"{r['step_cpu']:.3f}", f"{100 * r['step_flops'] / r['step_cpu'] / rate:.0f}",
            f"{r['adamw_cpu']:.3f}",
            f"{r['steps']:,}: {fmt_time(r['steps'] * r['step_flops'] / rate)} / "
            f"{fmt_time(r['steps'] * r['step_cpu'])}",
            f"{per_value / 1e3:.0f}K ({ss['denoiser'] / r['values'] / 1e3:.0f}K/"
            f"{ss['backbone'] / r['values'] / 1e3:.0f}K)",
            f"{100 * r['sample_flops'] / r['sample_cpu'] / rate:.0f}",
            f"{fmt_time(r['sample_flops'] / rate)} / {fmt_time(r['sample_cpu'])}"]


def run_sizes(args, peak: dict) -> None:
    from paramgen import io

    sizes = [int(float(v)) for v in args.sizes.split(",") if v]
    results, rows = [], []
    for target in sizes:
        for autocast in ("off", "bf16"):
            r = size_cost(target, autocast, args.timed_steps, args.sample_tokens)
            results.append(r)
            rows.append(size_row(r, peak))
            print(table(SIZE_HEADERS, [rows[-1]]).splitlines()[-1], flush=True)
    head = (f"matmul {args.matmul}^3 one thread: "
            + ", ".join(f"{n if n == 'bf16' else 'fp32'} {c / 1e9:.1f} GFLOP/cpu-s "
                        f"({w / 1e9:.1f} per wall-s)" for n, (c, w) in peak.items()))
    print("\n" + head + "\n\n" + table(SIZE_HEADERS, rows))
    out = Path(args.out)
    io.write_text(out / "throughput_sizes.md", head + "\n\n" + markdown(SIZE_HEADERS, rows)
                  + "\n")
    io.write_text(out / "throughput_sizes.json", json.dumps(
        {"peak": {k: v[0] for k, v in peak.items()}, "results": results}, indent=2) + "\n")
    print(f"wrote {out / 'throughput_sizes.md'}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1e4,1e6,1.1e7", help="generated values per model")
    ap.add_argument("--sample-tokens", type=int, default=512,
                    help="tokens sampled per size (then extrapolated to the whole model)")
    ap.add_argument("--quality", action="store_true",
                    help="the bf16 vs fp32 quality comparison on --collection instead")
    ap.add_argument("--collection", default="cnn-s/digits")
    ap.add_argument("--fit-steps", type=int, default=600)
    ap.add_argument("--timed-steps", type=int, default=12)
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
    if not args.quality:
        run_sizes(args, peak)
        return
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
