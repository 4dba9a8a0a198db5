"""Collection speed: seconds per checkpoint for a few arch/data pairs, and per task for a grid.

    python benchmarks/collect.py            # the default table (a few minutes on 2 CPU cores)
    python benchmarks/collect.py --quick    # smaller n and grid, for a smoke check

Each row is a fresh collection into a temporary folder with the library defaults (so the time
includes training to convergence). The grid rows time two grid sizes and take the difference, so
the per-task figure excludes worker start-up; the full-grid estimate adds start-up back.
Wall-clock times depend on how busy the machine is; CPU seconds are shown next to them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from paramgen.collect import collect, collect_tasks


def _timed(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    res = fn()
    return res, time.perf_counter() - w0, time.process_time() - c0


def _scores(ckpts) -> tuple[float, float, float]:
    metric = ckpts.info["metric"]
    s = [ckpts.metrics(i)[metric] for i in range(len(ckpts))]
    return min(s), statistics.fmean(s), max(s)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a markdown table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke check")
    ap.add_argument("--workers", type=int, default=2, help="grid worker processes (default 2)")
    args = ap.parse_args(argv)
    n = 10 if args.quick else 50
    pairs = [("cnn-s", "digits"), ("mlp", "digits"), ("resnet-mini", "digits"),
             ("cnn-s", "mnist1d")]
    if args.quick:
        pairs = pairs[:2]
    grid_sizes = (4, 12) if args.quick else (10, 40)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{'cuda' if torch.cuda.is_available() else 'cpu'}", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch, data in pairs:
            c, wall, cpu = _timed(lambda: collect(arch, data, Path(tmp) / f"{arch}-{data}", n=n,
                                                  progress=False))
            lo, mean, hi = _scores(c)
            rows.append((f"collect {arch} / {data}", f"n={n}", f"{wall:.1f}", f"{cpu:.1f}",
                         f"{wall / n:.2f} s/ckpt", f"{lo:.3f} / {mean:.3f} / {hi:.3f}"))
            print(f"done: {rows[-1]}", file=sys.stderr)
        timings = []
        for k in grid_sizes:
            c, wall, cpu = _timed(lambda: collect_tasks(
                "mlp", "digits", Path(tmp) / f"grid{k}", tasks=k, workers=args.workers,
                progress=False))
            lo, mean, hi = _scores(c)
            timings.append((k, wall))
            rows.append((f"grid mlp(64) / digits, {args.workers} workers", f"{k} tasks",
                         f"{wall:.1f}", f"{cpu:.1f}", f"{wall / k:.2f} s/task",
                         f"{lo:.3f} / {mean:.3f} / {hi:.3f}"))
            print(f"done: {rows[-1]}", file=sys.stderr)
    (k1, t1), (k2, t2) = timings
    per_task = max(0.0, (t2 - t1) / (k2 - k1))
    startup = max(0.0, t1 - per_task * k1)
    full = startup + per_task * 1022

    print("| what | size | wall s | CPU s (parent) | time per item | metric min / mean / max |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print()
    print(f"grid: {per_task:.3f} s per task (slope {k1}->{k2} tasks), start-up {startup:.1f} s; "
          f"estimated full 1022-task grid: {full:.0f} s ({full / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
