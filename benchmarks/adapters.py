"""Adapters for tasks never seen: generated LoRA/DoRA adapters vs directly trained ones, and the
time to a working adapter for a new task, generating vs fine-tuning, measured side by side.

    python benchmarks/adapters.py                       # 220 tasks (200 seen, 20 unseen) per kind
    python benchmarks/adapters.py --quick               # 66 tasks, 300 generator steps

About 15 minutes of one CPU thread per kind (collect ~3, RPG fit ~4, evaluation the rest); the
grids and generators are kept in --out and reused by a later run with the same settings.

Per kind (LoRA, DoRA): collect an adapter grid on digits (`paramgen collect --lora` in Python;
reused from --out when already there), train task-conditioned RPG with the public API on the
seen tasks, then for every unseen task generate --samples adapters as PEFT folders, load each
through peft onto the base and measure its balanced accuracy next to the directly trained
adapter of that task. Timing, per unseen task and interleaved in one process: generating one
adapter (gen.sample, DDIM with --sample-steps) vs fine-tuning one from the shared initial
adapter, (a) the whole recipe the grid was trained with and (b) only until it first reaches the
generated adapters' mean balanced accuracy (evaluation time excluded from the fine-tune clock).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import paramgen as pg
from paramgen import data as pdata
from paramgen.adapters import (LoraRecipe, attach, collect_adapters, load_adapter, load_base,
                               read_peft_folder, train_adapter)
from paramgen.commands.train import parse_overrides, split_tasks
from paramgen.data import task_subset
from paramgen.metrics import evaluate_model


def clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def since(t0: tuple[float, float]) -> tuple[float, float]:
    return time.perf_counter() - t0[0], time.process_time() - t0[1]


def generated_scores(gen, base, bits, x, y, n, seed, steps, folder: Path) -> list[float]:
    dirs = gen.sample_to_peft([folder / f"{bits}_{i}" for i in range(n)], condition=bits,
                              seed=seed, mode="full", steps=steps)
    return [evaluate_model(load_adapter(base, d), x, y, "balanced_accuracy") for d in dirs]


def time_generation(gen, bits, seed, steps, repeats=3) -> tuple[float, float]:
    """Seconds (wall, CPU) to generate one adapter's weights, best of `repeats`."""
    best = (float("inf"), float("inf"))
    for r in range(repeats):
        t0 = clock()
        gen.sample(1, condition=bits, seed=seed + r, mode="full", steps=steps)
        best = min(best, since(t0))
    return best


def finetune_curve(template, x_tr, y_tr, x_te, y_te, settings, seed):
    """Fine-tune one adapter from the shared start with the grid's recipe; after every step
    record (wall s, CPU s, test balanced accuracy), the clock paused while evaluating."""
    spent, curve = [0.0, 0.0], []
    mark = [clock()]

    def on_step(step, model):
        wall, cpu = since(mark[0])
        spent[0] += wall
        spent[1] += cpu
        curve.append((spent[0], spent[1],
                      evaluate_model(model, x_te, y_te, "balanced_accuracy")))
        mark[0] = clock()

    train_adapter(copy.deepcopy(template), x_tr, y_tr, seed=seed, on_step=on_step, **settings)
    return curve


def first_reaching(curve, target):
    """(wall, CPU) when the fine-tune first reached `target`, or None."""
    return next(((w, c) for w, c, acc in curve if acc >= target), None)


def trained_generator(grid, seen_idx, out: Path, args):
    """RPG fitted on the seen tasks, or the one an earlier run saved with the same settings."""
    tag = "_".join([args.preset, str(args.steps), *sorted(args.set)]).replace("=", "-")
    folder = out / f"gen_{tag}"
    if (folder / "config.json").is_file():
        return pg.load_generator(folder), None
    t0 = clock()
    gen = pg.RPG(preset=args.preset, **parse_overrides(args.set))
    gen.fit(grid.subset(seen_idx), steps=args.steps, seed=args.seed, progress=not args.quiet)
    fit_s = since(t0)
    gen.save_pretrained(folder)
    return gen, fit_s


def run_kind(kind: str, args, tasks: list[str], seen: list[str], unseen: list[str]) -> dict:
    out = Path(args.out) / kind
    recipe = LoraRecipe.parse(args.lora, dora=(kind == "dora"), head=args.head)
    t0 = clock()
    grid = collect_adapters(args.data, out, tasks=tasks, recipe=recipe, seed=args.seed,
                            steps=args.adapter_steps, pretrain_steps=args.pretrain_steps,
                            progress=not args.quiet)
    collect_s = since(t0)
    base, _ = load_base(out / "base")
    keep = [i for i in range(len(grid)) if grid.provenance(i)["task"] in set(seen)]
    gen, fit_s = trained_generator(grid, keep, out, args)

    x_tr, y_tr, x_te, y_te = pdata.load(args.data)
    direct = {grid.provenance(i)["task"]: grid.metrics(i)["balanced_accuracy"]
              for i in range(len(grid))}
    template = attach(base, recipe, grid.info["base"]["head_module"],
                      read_peft_folder(out / "init")[0])
    settings = dict(grid.info["train"])
    rows: dict[int | None, list[dict]] = {s: [] for s in args.sample_steps}
    with tempfile.TemporaryDirectory() as tmp:
        for bits in unseen:
            y_bits, y_tr_bits = pdata.relabel(y_te, bits), pdata.relabel(y_tr, bits)
            task_seed = args.seed * 1024 + int(bits, 2) - 1
            curve = finetune_curve(template, x_tr, y_tr_bits, x_te, y_bits, settings, task_seed)
            for steps in args.sample_steps:
                scores = generated_scores(gen, base, bits, x_te, y_bits, args.samples,
                                          args.seed, steps, Path(tmp))
                rows[steps].append({
                    "bits": bits, "direct": direct[bits], "best": max(scores),
                    "mean": statistics.mean(scores),
                    "gen_t": time_generation(gen, bits, args.seed, steps),
                    "full_t": curve[-1][:2],
                    "match_t": first_reaching(curve, statistics.mean(scores))})
    return {"kind": kind, "rows": rows, "collect_s": collect_s, "fit_s": fit_s,
            "values": grid.num_params, "n_seen": len(seen), "n_unseen": len(unseen),
            "sampler": gen.config.sampler, "default_steps": gen.config.sampling_steps}


def report(res: dict, args) -> None:
    fit = (f"RPG fit {res['fit_s'][0]:.0f} s wall ({res['fit_s'][1]:.0f} s CPU)"
           if res["fit_s"] else "RPG loaded from an earlier run")
    print(f"\n== {res['kind'].upper()}: {res['values']} adapter values; {res['n_seen']} seen "
          f"tasks, {res['n_unseen']} unseen; collect {res['collect_s'][0]:.0f} s wall "
          f"({res['collect_s'][1]:.0f} s CPU), {fit}")
    for steps, rows in res["rows"].items():
        print(f"\n-- sampling: {res['sampler']} {steps or res['default_steps']} steps")
        report_rows(rows)


def report_rows(rows: list[dict]) -> None:
    print(f"{'unseen task':12s} {'direct':>7s} {'gen best':>9s} {'gen mean':>9s} "
          f"{'gen ms':>7s} {'tune ms':>8s} {'to-match ms':>12s}")
    for r in rows:
        match = f"{1000 * r['match_t'][0]:12.0f}" if r["match_t"] else f"{'never':>12s}"
        print(f"{r['bits']:12s} {100 * r['direct']:7.1f} {100 * r['best']:9.1f} "
              f"{100 * r['mean']:9.1f} {1000 * r['gen_t'][0]:7.1f} {1000 * r['full_t'][0]:8.0f} "
              f"{match}")
    m_direct = statistics.mean(r["direct"] for r in rows)
    m_gen = statistics.mean(r["mean"] for r in rows)
    m_best = statistics.mean(r["best"] for r in rows)
    worst = min(r["mean"] for r in rows)
    print(f"{'mean':12s} {100 * m_direct:7.1f} {100 * m_best:9.1f} {100 * m_gen:9.1f}")
    print(f"gap (direct - generated mean): {100 * (m_direct - m_gen):.2f} points; worst unseen "
          f"task's generated mean {100 * worst:.1f}% (chance: 50%)")
    for label, i in (("wall", 0), ("CPU", 1)):
        gen_t = statistics.median(r["gen_t"][i] for r in rows)
        full_t = statistics.median(r["full_t"][i] for r in rows)
        matched = [r["match_t"][i] for r in rows if r["match_t"]]
        line = (f"time to an adapter ({label}, median over unseen tasks): generate "
                f"{1000 * gen_t:.1f} ms, fine-tune {1000 * full_t:.0f} ms "
                f"(x{full_t / gen_t:.0f})")
        if matched:
            match_t = statistics.median(matched)
            line += (f"; fine-tune to the generated accuracy {1000 * match_t:.0f} ms "
                     f"(x{match_t / gen_t:.0f}, reached in {len(matched)}/{len(rows)} tasks)")
        print(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench-adapters",
                    help="where the grids go (reused when there)")
    ap.add_argument("--data", default="digits")
    ap.add_argument("--kinds", default="lora,dora")
    ap.add_argument("--lora", default="r=4,targets=q,v")
    ap.add_argument("--head", default="adapter", choices=("adapter", "shared"))
    ap.add_argument("--tasks", type=int, default=220, help="tasks in the grid (seeded subset)")
    ap.add_argument("--unseen", type=int, default=20, help="tasks held out")
    ap.add_argument("--adapter-steps", type=int, default=None)
    ap.add_argument("--pretrain-steps", type=int, default=None)
    ap.add_argument("--preset", default="cpu-tasks")
    ap.add_argument("--steps", type=int, default=1000, help="generator training steps")
    ap.add_argument("--set", action="append", default=None, metavar="KEY=VALUE",
                    help="RPG config overrides (default: token_size=128 diffusion_batch=128: "
                         "a LoRA A or B matrix of r=4, d=32 is one token of 128 values)")
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--sample-steps", default="60,10,2",
                    help="DDIM steps when sampling, a comma list: each is measured")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true",
                    help="reduced size: 66 tasks (6 unseen), 300 generator steps")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    if args.set is None:
        args.set = ["token_size=128", "diffusion_batch=128"]
    if args.quick:
        args.tasks, args.unseen, args.steps = 66, 6, 300
        args.out = args.out if args.out != "runs/bench-adapters" else "runs/bench-adapters-quick"
    args.sample_steps = [int(s) for s in str(args.sample_steps).split(",") if s.strip()]
    torch.set_num_threads(1)
    tasks = task_subset(args.tasks, num_classes=pdata.num_classes(args.data), seed=args.seed)
    seen, unseen = split_tasks(tasks, args.unseen / len(tasks), args.seed)
    t0 = time.perf_counter()
    print(f"adapters on {args.data}: {' '.join(sys.argv[1:]) or '(defaults)'}; generator "
          f"RPG preset {args.preset}, {args.samples} samples per unseen task; balanced "
          "accuracy (%) on the test split, adapters loaded through peft", flush=True)
    for kind in args.kinds.split(","):
        report(run_kind(kind.strip(), args, tasks, seen, unseen), args)
        sys.stdout.flush()
    print(f"\ntotal {time.perf_counter() - t0:.0f} s wall (one thread, shared busy machine)")


if __name__ == "__main__":
    main()
