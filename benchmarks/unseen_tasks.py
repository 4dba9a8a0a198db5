"""Models for tasks never seen, on every task grid given: train task-conditioned RPG on the seen
tasks of each grid and compare, task by task, the generated models with the directly trained
ones (RPG paper §4, Tables 9, 10, 14; issue 27).

    paramgen collect --tasks 300 --data digits --out runs/g-mlp
    paramgen collect --tasks 300 --data mnist1d --arch cnn-s --out runs/g-cnn
    paramgen collect --lora r=4,targets=q,v --tasks 150 --data mnist1d --out runs/g-lora
    python benchmarks/unseen_tasks.py --grid runs/g-mlp --grid runs/g-cnn --grid runs/g-lora
    python benchmarks/unseen_tasks.py --quick --grid ...     # 300 steps, 10 tasks: a screen

Per grid, balanced accuracy (%) on the relabelled test split, four rows:
  * unseen:  generated models (mean of --samples per task) for the held-out tasks;
  * seen:    the same for a seeded sample of as many seen tasks: how precisely the generator
             places a conditioned model at all, apart from generalising to new bits;
  * nearest-seen copy: for each unseen task, the directly trained models of the seen task(s)
             whose bits are closest (Hamming), scored on the unseen task: what a lookup gives;
  * kernel interpolation: the seen tasks' mean models interpolated to the unseen bits by
             Gaussian-kernel ridge regression (length scale and ridge chosen by leave-one-out on
             the seen tasks, never on the unseen ones): what smooth interpolation of the seen
             models in bit space gives, a reference for how far the grid's seen tasks determine
             the unseen ones;
each against the task's directly trained models (mean of its checkpoints); "worst" is the task
with the largest gap. --flipped N adds RPG Table 10's check. Adapter grids (`collect --lora`)
are scored loaded onto their base.
Fit times are CPU seconds of this process (one thread) and wall seconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

import paramgen as pg
from paramgen.commands.train import parse_overrides, split_tasks
from paramgen.data import load, relabel
from paramgen.evaluation.core import build_model, load_into
from paramgen.methods.rpg.anchor import KernelAnchor
from paramgen.metrics import evaluate_model


def scorer(grid_dir: Path, info: dict):
    """(state dict, bits) -> balanced accuracy on the task's relabelled test split."""
    _, _, x, y = load(info["data"])
    if info.get("peft_config"):
        from peft import set_peft_model_state_dict

        from paramgen.adapters import load_adapter

        # The shared initial adapter loaded through peft; each adapter's weights are set into
        # it in memory (the same outputs as its PEFT folder: tests/test_adapters.py).
        model = load_adapter(grid_dir / "base", grid_dir / "init")

        def load_sd(sd):
            set_peft_model_state_dict(model, sd)
            return model.eval()
    else:
        model = build_model(info)

        def load_sd(sd):
            return load_into(model, sd)

    def score(sd, bits: str) -> float:
        return evaluate_model(load_sd(sd), x, relabel(y, bits), "balanced_accuracy")
    return score


def hamming(a: str, b: str) -> int:
    return sum(u != v for u, v in zip(a, b))


def flat_values(sd: dict, keys: list[str]) -> torch.Tensor:
    return torch.cat([sd[k].double().reshape(-1) for k in keys])


def kernel_interpolation(seen_means: dict[str, torch.Tensor], targets: list[str]
                         ) -> tuple[torch.Tensor, str]:
    """The seen tasks' flattened mean models interpolated to ``targets`` by the library's kernel
    anchor (methods/rpg/anchor.py: Gaussian-kernel ridge regression on the task bits, length
    scale and ridge by leave-one-out on the seen tasks). Returns ([len(targets), values], the
    chosen setting)."""
    def bits(ts):
        return torch.tensor([[float(c) for c in t] for t in ts])

    seen = sorted(seen_means)
    y = torch.stack([seen_means[t] for t in seen]).float()
    anchor = KernelAnchor(len(seen), len(seen[0]), 1, y.shape[1])
    chosen = anchor.fit(bits(seen), y[:, None])
    return (anchor(bits(targets))[:, 0].double(),
            f"{chosen.setting()}, leave-one-out {chosen.loo_share:.2f}")


def one_basin(grid, tasks: list[str], seen: list[str], models: dict[str, list[int]], score,
              pairs: int) -> tuple[int, float, float, float]:
    """Whether the seen tasks' models lie in one basin, where interpolating them can work: for
    up to ``pairs`` seen tasks a with a seen neighbour b one bit away, task a's accuracy of its
    own model, of b's model and of their midpoint (first checkpoint of each). Returns (pairs,
    own, neighbour's, midpoint's) means."""
    seen_set, rows = set(seen), []
    for a in seen:
        one_off = (a[:i] + ("1" if c == "0" else "0") + a[i + 1:] for i, c in enumerate(a))
        b = next((t for t in one_off if t in seen_set), None)
        if b is None:
            continue
        own, other = grid[models[a][0]], grid[models[b][0]]
        mid = {k: ((v.double() + other[k].double()) / 2).to(v.dtype) if v.is_floating_point()
               else v for k, v in own.items()}
        rows.append((score(own, a), score(other, a), score(mid, a)))
        if len(rows) == pairs:
            break
    if not rows:
        return 0, float("nan"), float("nan"), float("nan")
    return (len(rows),) + tuple(statistics.mean(r[j] for r in rows) for j in range(3))


def fit_or_load(grid, keep: list[int], name: str, args) -> tuple[object, float | None,
                                                                  float | None]:
    """The generator of this grid: loaded from --load-dir when it has one, else fitted (and
    saved to --save-dir); (generator, CPU s, wall s) with None times when loaded."""
    if args.load_dir and (Path(args.load_dir) / name / "config.json").is_file():
        return pg.RPG.from_pretrained(Path(args.load_dir) / name), None, None
    overrides = parse_overrides(args.set)
    gen = pg.RPG(preset=args.preset, **overrides) if args.preset else pg.RPG(**overrides)
    cpu0, wall0 = time.process_time(), time.time()
    gen.fit(grid.subset(keep), steps=args.steps, seed=args.seed, progress=args.progress)
    cpu, wall = time.process_time() - cpu0, time.time() - wall0
    if args.save_dir:
        gen.save_pretrained(Path(args.save_dir) / name)
    return gen, cpu, wall


def row(label: str, per_task: list[tuple[str, float, float]]) -> dict:
    """per_task: (bits, direct, generated) -> the numbers of one table row."""
    worst = max(per_task, key=lambda r: r[1] - r[2])
    return {"label": label, "tasks": len(per_task),
            "direct": statistics.mean(r[1] for r in per_task),
            "gen": statistics.mean(r[2] for r in per_task),
            "worst_task": worst[0], "worst_gap": worst[1] - worst[2],
            "worst_gen": min(r[2] for r in per_task)}


def measure_grid(path: str, args) -> dict:
    grid_dir = Path(path)
    grid = pg.CheckpointSet.load(grid_dir)
    info = grid.info
    tasks = [grid.provenance(i)["task"] for i in range(len(grid))]
    seen, unseen = split_tasks(tasks, args.holdout, args.seed)
    if args.seen:  # a sparser grid with the same unseen tasks: how the gap grows with fewer
        if args.seen > len(seen):
            raise SystemExit(f"--seen {args.seen}: {grid_dir} has only {len(seen)} seen tasks")
        pick = torch.randperm(len(seen), generator=torch.Generator().manual_seed(args.seed + 1))
        seen = sorted(seen[j] for j in pick[:args.seen].tolist())
    seen_set = set(seen)
    keep = [i for i, t in enumerate(tasks) if t in seen_set]
    name = grid_dir.name + (f"-seen{args.seen}" if args.seen else "")
    gen, cpu, wall = fit_or_load(grid, keep, name, args)
    score = scorer(grid_dir, info)
    direct: dict[str, list[float]] = {}
    models: dict[str, list[int]] = {}
    for i, t in enumerate(tasks):
        direct.setdefault(t, []).append(grid.metrics(i)["balanced_accuracy"])
        models.setdefault(t, []).append(i)

    def generated(bits: str) -> float:
        extra = {"guidance": args.guidance} if args.guidance != 1.0 else {}
        sds = gen.sample(args.samples, condition=bits, seed=args.seed, mode="full",
                         steps=args.sample_steps, **extra)
        return statistics.mean(score(sd, bits) for sd in sds)

    n = min(len(unseen), args.max_tasks) if args.max_tasks else len(unseen)
    g = torch.Generator().manual_seed(args.seed)
    seen_pick = [seen[j] for j in torch.randperm(len(seen), generator=g)[:n].tolist()]
    t0 = time.process_time()
    unseen_rows = [(b, statistics.mean(direct[b]), generated(b)) for b in unseen[:n]]
    seen_rows = [(b, statistics.mean(direct[b]), generated(b)) for b in seen_pick]
    copy_rows = []
    for b in unseen[:n]:
        d = min(hamming(b, s) for s in seen)
        near = [s for s in seen if hamming(b, s) == d]
        copy = statistics.mean(score(grid[i], b) for s in near for i in models[s])
        copy_rows.append((b, statistics.mean(direct[b]), copy))
    keys = [k for k, v in grid[0].items() if v.is_floating_point()]
    like = grid[0]
    seen_means = {s: torch.stack([flat_values(grid[i], keys) for i in models[s]]).mean(0)
                  for s in seen}
    predicted, kernel_setting = kernel_interpolation(seen_means, unseen[:n])
    kernel_rows = []
    for b, v in zip(unseen[:n], predicted):
        sd, at = dict(like), 0
        for k in keys:
            sd[k] = v[at:at + like[k].numel()].reshape(like[k].shape).to(like[k].dtype)
            at += like[k].numel()
        kernel_rows.append((b, statistics.mean(direct[b]), score(sd, b)))
    rows = [row("unseen, generated", unseen_rows), row("seen, generated", seen_rows),
            row("unseen, nearest-seen copy", copy_rows),
            row(f"unseen, kernel interpolation ({kernel_setting})", kernel_rows)]
    if args.prototypes:  # the backbone's prototypes as the model: the mean the denoiser refines
        def prototype(bits: str) -> float:
            tokens = gen.prototypes(1, condition=bits, seed=args.seed)[0]
            return score(gen.tokenizer.detokenize(tokens), bits)
        rows.append(row("unseen, prototypes", [(b, statistics.mean(direct[b]), prototype(b))
                                               for b in unseen[:n]]))
    basin = one_basin(grid, tasks, seen, models, score, args.basin) if args.basin else None
    flipped = []
    for j in torch.randperm(len(seen), generator=g)[:args.flipped].tolist():
        inverse = "".join("1" if c == "0" else "0" for c in seen[j])
        flipped.append((seen[j], generated(seen[j]), inverse, generated(inverse),
                        "seen" if inverse in seen_set else "unseen"))
    eval_cpu = time.process_time() - t0
    return {"grid": name, "arch": info.get("arch") or info.get("base", {}).get("arch"),
            "data": info["data"], "adapter": bool(info.get("peft_config")),
            "values": grid.num_params, "seen": len(seen), "unseen": len(unseen),
            "fit_cpu": cpu, "fit_wall": wall, "eval_cpu": eval_cpu,
            "steps": gen.config.steps if args.steps is None else args.steps,
            "rows": rows, "basin": basin,
            "per_task": unseen_rows, "flipped": flipped}


def print_table(results: list[dict], args) -> None:
    print(f"\nbalanced accuracy (%), {args.samples} samples per task "
          f"(sampler steps {args.sample_steps or 'default'}, guidance {args.guidance}), "
          f"seed {args.seed}; "
          f"settings: preset {args.preset or 'RPG() default'} {' '.join(args.set)}")
    print("| grid | values | seen / unseen tasks | fit steps | fit CPU s (wall) | row | tasks "
          "| directly trained | generated | gap | worst task: gap (generated) |")
    print("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for r in results:
        kind = "LoRA " if r["adapter"] else ""
        fit = ("loaded" if r["fit_cpu"] is None
               else f"{r['fit_cpu']:.0f} ({r['fit_wall']:.0f})")
        for j, x in enumerate(r["rows"]):
            head = (f"| {r['grid']} ({kind}{r['arch']}, {r['data']}) | {r['values']} | "
                    f"{r['seen']} / {r['unseen']} | {r['steps']} | {fit} |" if j == 0
                    else "| | | | | |")
            print(f"{head} {x['label']} | {x['tasks']} | {100 * x['direct']:.1f} | "
                  f"{100 * x['gen']:.1f} | {100 * (x['direct'] - x['gen']):.2f} | "
                  f"{x['worst_task']}: {100 * x['worst_gap']:.1f} ({100 * x['worst_gen']:.1f}) |")
    for r in results:
        if r["basin"]:
            n, own, other, mid = r["basin"]
            verdict = ("below the neighbour's: a barrier between tasks, so averaging their "
                       "models loses" if mid < other else
                       "not below the neighbour's: no barrier, one basin")
            print(f"\n{r['grid']}: one basin? over {n} seen tasks with a seen neighbour one bit "
                  f"away, the task's own model {100 * own:.1f}, the neighbour's {100 * other:.1f}, "
                  f"their midpoint {100 * mid:.1f} ({verdict})")
    for r in results:
        if r["flipped"]:
            print(f"\n{r['grid']}: flipped embeddings (RPG Table 10), every bit of a seen task "
                  "inverted: seen task, generated, inverted task, generated, in the grid")
            for bits, a, inverse, b, where in r["flipped"]:
                print(f"  {bits} {100 * a:6.1f}  {inverse} {100 * b:6.1f}  {where}")
    if args.per_task:
        for r in results:
            print(f"\n{r['grid']}: unseen task, directly trained, generated")
            for bits, d, gval in r["per_task"]:
                print(f"  {bits} {100 * d:6.1f} {100 * gval:6.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", action="append", required=True,
                    help="a task-grid CheckpointSet folder (repeat for several)")
    ap.add_argument("--preset", default=None, help="default: RPG()'s choice (cpu-tasks)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--holdout", type=float, default=0.1)
    ap.add_argument("--seen", type=int, default=None,
                    help="train on this many of the seen tasks (a seeded subset; the unseen "
                         "tasks stay the same): the gap against the grid's density")
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--max-tasks", type=int, default=None,
                    help="evaluate at most this many unseen (and seen) tasks")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--save-dir", default=None, help="save each grid's generator in DIR/<grid>")
    ap.add_argument("--load-dir", default=None,
                    help="evaluate the generators --save-dir saved (same --seed) where present")
    ap.add_argument("--sample-steps", type=int, default=None, help="sampler steps")
    ap.add_argument("--guidance", type=float, default=1.0,
                    help="classifier-free guidance weight (needs --set condition_dropout=P)")
    ap.add_argument("--quick", action="store_true",
                    help="a screen: 300 fit steps, 2 samples, 10 tasks (unless given)")
    ap.add_argument("--per-task", action="store_true", help="print every unseen task too")
    ap.add_argument("--flipped", type=int, default=0,
                    help="seen tasks whose inverted bits to generate (RPG Table 10): their "
                         "models must stay accurate, not fall to chance")
    ap.add_argument("--basin", type=int, default=0, metavar="PAIRS",
                    help="check this many neighbouring seen-task pairs for a barrier between "
                         "their models (midpoint accuracy)")
    ap.add_argument("--prototypes", action="store_true",
                    help="a row for the backbone's prototypes taken as the model (no diffusion)")
    ap.add_argument("--progress", action="store_true", help="show the fit's progress bar")
    args = ap.parse_args()
    if args.quick:
        args.steps = args.steps or 300
        args.samples = 2 if args.samples == ap.get_default("samples") else args.samples
        args.max_tasks = args.max_tasks or 10
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    results = []
    for path in args.grid:
        results.append(measure_grid(path, args))
        print_table(results[-1:], args)  # each grid as soon as it is done
    if len(results) > 1:
        print_table(results, args)


if __name__ == "__main__":
    main()
