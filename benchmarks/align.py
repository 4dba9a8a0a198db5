"""One basin: what aligning checkpoints (paramgen.align) does for parameter generation.

    python benchmarks/align.py runs     # (b) 5 runs x 10 checkpoints: generated accuracy, novelty
    python benchmarks/align.py grid     # (a) cold- vs warm-started task grid: unseen-task gap
    python benchmarks/align.py cost     # (c) seconds to align N checkpoints of P parameters
    python benchmarks/align.py barrier  # (d) loss barrier between two runs, before and after
    python benchmarks/align.py neighbours  # (a') what seen task models, combined, give an unseen task

Every part prints a table of measured numbers; `--small` runs a CI-sized version of each. One
thread (set below): the machine these were measured on has 2 cores shared with other jobs.
Generators are trained through the public API only (pg.RPG(preset=...).fit / .sample).
"""

from __future__ import annotations

import argparse
import math
import warnings
import statistics
import time
from pathlib import Path

import torch
from torch import nn

import paramgen as pg
from paramgen.align import align, barrier, basin_test, structure_for
from paramgen.commands.train import split_tasks
from paramgen.data import load, relabel, task_subset
from paramgen.evaluation.core import build_model, predictions, score
from paramgen.evaluation.similarity import max_similarity

torch.set_num_threads(1)
# RPG says when it generates an unseen task as its nearest seen one; the tables say it here.
warnings.filterwarnings("ignore", message="condition .* is not one of the training tasks")


class TinyConv1d(nn.Module):
    """A small 1D CNN that is not in the zoo (mnist1d: 40 samples per signal)."""

    def __init__(self, classes: int = 2, width: int = 8, hidden: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, width, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(width, width, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(width * 10, hidden), nn.ReLU(),
                                  nn.Linear(hidden, classes))

    def forward(self, x):
        return self.head(self.features(x.reshape(len(x), 1, -1)))


def make_model(arch: str, in_shape, classes: int, seed: int) -> nn.Module:
    if arch == "conv1d":
        torch.manual_seed(seed)
        return TinyConv1d(classes)
    return pg.zoo.create(arch, in_shape, classes, seed=seed)


def accuracies(sds, model, x, y, metric="accuracy") -> list[float]:
    preds = predictions(sds, model, x)
    return [100 * float(v) for v in score(preds, y, metric)]


def fit(ckpts, preset: str, steps: int | None, seed: int = 0, **overrides):
    gen = pg.RPG(preset=preset, **overrides)
    t0 = time.time()
    gen.fit(ckpts, steps=steps, seed=seed, progress=False)
    return gen, time.time() - t0


# ----------------------------------------------------------------------------- (b) runs

def part_runs(args) -> None:
    path = Path(args.workdir) / f"runs-{args.arch}-{args.data}-{args.runs}x{args.n}"
    if not (path / "manifest.json").exists():
        from paramgen.collect import collect

        collect(args.arch, args.data, path, n=args.n, runs=args.runs, progress=False)
    ckpts = pg.CheckpointSet.load(path)
    model = build_model(ckpts.info)
    _, _, x, y = load(ckpts.info["data"])
    orig = accuracies(list(ckpts), model, x, y)
    orig_preds = predictions(list(ckpts), model, x)
    spec = structure_for(ckpts)
    test = basin_test(ckpts, spec)
    print(f"\n(b) {args.runs} runs x {args.n} checkpoints of {args.arch} on {args.data} "
          f"({ckpts.num_params:,} parameters); distance test median ratio {test.median:.2f}; "
          f"RPG {args.preset}, {args.steps or 'preset'} steps, {args.samples} samples")
    print(f"{'collection':22s} {'align s':>7s} {'fit s':>6s} {'mean':>6s} {'best':>6s} "
          f"{'min':>6s} {'std':>5s} {'max IoU':>8s} {'copies':>6s}")
    print(f"{'checkpoints':22s} {'':>7s} {'':>6s} {statistics.mean(orig):6.2f} {max(orig):6.2f} "
          f"{min(orig):6.2f} {statistics.pstdev(orig):5.2f}", flush=True)
    for method in args.run_variants or ["none"] + args.methods:
        t0 = time.time()
        c = ckpts if method == "none" else align(ckpts, method=method)
        align_s = time.time() - t0
        gen, fit_s = fit(c, args.preset, args.steps)
        sds = gen.sample(args.samples, seed=0)
        acc = accuracies(sds, model, x, y)
        sim = max_similarity(predictions(sds, model, x), orig_preds, y=y)
        sims = [float(s) for s in sim]
        copies = sum(s >= 0.999 for s in sims)
        label = "unaligned" if method == "none" else f"aligned ({method})"
        print(f"{label:22s} {align_s:7.1f} {fit_s:6.0f} {statistics.mean(acc):6.2f} "
              f"{max(acc):6.2f} {min(acc):6.2f} {statistics.pstdev(acc):5.2f} "
              f"{statistics.mean(sims):8.3f} {copies:6d}", flush=True)


# ----------------------------------------------------------------------------- (a) grid

def _train_task(arch, in_shape, bits, x, y, steps, lr, seed, init=None, per_task=2,
                batch=512):
    model = make_model(arch, in_shape, 2, seed)
    if init is not None:
        own = model.state_dict()
        model.load_state_dict({k: v if v.shape == own[k].shape else own[k]
                               for k, v in init.items()})
    yb = relabel(y, bits)
    weight = torch.bincount(yb, minlength=2).float()
    weight = weight.sum() / (2 * weight.clamp(min=1))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    out = []
    for step in range(steps):
        for group in opt.param_groups:  # cosine decay to 10%
            group["lr"] = lr * (0.1 + 0.45 * (1 + math.cos(math.pi * step / steps)))
        idx = torch.randint(len(x), (batch,), generator=gen)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[idx]), yb[idx], weight=weight).backward()
        opt.step()
        if step >= steps - per_task:
            out.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    return out


def make_grid(args, warm: bool) -> pg.CheckpointSet:
    kind = "warm" if warm else "cold"
    path = Path(args.workdir) / f"grid-{args.arch}-{args.data}-{args.tasks}-{kind}"
    if (path / "manifest.json").exists():
        return pg.CheckpointSet.load(path)
    x_tr, y_tr, x_te, y_te = load(args.data)
    in_shape = tuple(x_tr.shape[1:])
    init, lr = None, args.lr
    if warm:  # one model trained on all classes, fine-tuned per task (paramgen collect --tasks)
        full = make_model(args.arch, in_shape, 10, seed=0)
        opt = torch.optim.Adam(full.parameters(), lr=args.lr / 4)
        pre_gen = torch.Generator().manual_seed(0)
        for _ in range(10 * args.task_steps):
            idx = torch.randint(len(x_tr), (args.batch,), generator=pre_gen)
            opt.zero_grad()
            nn.functional.cross_entropy(full(x_tr[idx]), y_tr[idx]).backward()
            opt.step()
        init, lr = full.state_dict(), args.lr / 4
    tasks = task_subset(args.tasks, num_classes=10, seed=0)
    sds, conds, metrics, prov = [], [], [], []
    model = make_model(args.arch, in_shape, 2, 0).eval()
    t0 = time.time()
    for t, bits in enumerate(tasks):
        # cold: every task model from its own seed; warm: the head from one shared seed
        seed = 0 if warm else 1000 + t
        for k, sd in enumerate(_train_task(args.arch, in_shape, bits, x_tr, y_tr,
                                           args.task_steps, lr, seed, init,
                                           args.per_task, args.batch)):
            bacc = accuracies([sd], model, x_te, relabel(y_te, bits), "balanced_accuracy")[0]
            sds.append(sd)
            conds.append([float(b) for b in bits])
            metrics.append({"balanced_accuracy": bacc / 100})
            prov.append({"task": bits, "seed": seed, "index": k})
        if args.verbose and t % 50 == 0:
            print(f"  {kind} grid: {t + 1}/{len(tasks)} tasks, {time.time() - t0:.0f} s",
                  flush=True)
    info = {"data": args.data, "in_shape": list(in_shape), "num_classes": 2,
            "metric": "balanced_accuracy", "kind": "task_grid", "warm_start": warm,
            "model": args.arch}
    if args.arch != "conv1d":
        info["arch"] = args.arch
    grid = pg.CheckpointSet.from_state_dicts(sds, conditions=conds, metrics=metrics,
                                             provenance=prov, info=info)
    grid.save(path)
    return pg.CheckpointSet.load(path)


def _hamming(a: str, b: str) -> int:
    """How many classes two tasks (bit strings) label differently."""
    return sum(x != y for x, y in zip(a, b))


def _parse_variant(text: str) -> tuple[str, str, int, bool]:
    """GRID:METHOD[:ROUNDS][:task] -> (grid, method, rounds, a run per task)."""
    kind, method, *rest = text.split(":")
    rounds = next((int(r) for r in rest if r.isdigit()), 1)
    return kind, method, rounds, "task" in rest


def _bacc(sds, model, x, y, bits) -> float:
    return statistics.mean(accuracies(sds, model, x, relabel(y, bits), "balanced_accuracy"))


def part_grid(args) -> None:
    x_tr, _, x_te, y_te = load(args.data)
    in_shape = tuple(x_tr.shape[1:])
    model = make_model(args.arch, in_shape, 2, 0).eval()
    variants = [_parse_variant(v) for v in args.variants] if args.variants else \
        [("cold", "none", 1, False)] + [("cold", m, 1, False) for m in args.methods] + \
        [("warm", "none", 1, False)]
    grids = {kind: make_grid(args, warm=kind == "warm") for kind in {v[0] for v in variants}}
    if args.collect_only:
        return
    first = next(iter(grids.values()))
    tasks = [first.provenance(i)["task"] for i in range(len(first))]
    seen, unseen = split_tasks(tasks, args.holdout, 0)
    unseen = unseen[:args.max_unseen]
    seen_eval = seen[:args.max_unseen]
    keep = [i for i, t in enumerate(tasks) if t in set(seen)]
    print(f"\n(a) task grid of {args.arch} on {args.data}: {len(seen)} seen tasks, "
          f"{len(unseen)} unseen evaluated; RPG {args.preset}, {args.steps or 'preset'} steps, "
          f"{args.samples} samples per task; balanced accuracy (%); 'seen': generated for "
          f"{len(seen_eval)} seen tasks")
    print(f"{'grid':40s} {'ratio':>5s} {'align s':>7s} {'fit s':>6s} {'direct':>6s} "
          f"{'gen':>6s} {'gap':>6s} {'worst':>6s} {'<55%':>4s} {'seen':>6s}")

    def line(label, ratio, align_s, fit_s, direct, generated, seen_gen):
        cols = [f"{ratio:5.2f}" if ratio is not None else f"{'':5s}",
                f"{align_s:7.1f}" if align_s is not None else f"{'':7s}",
                f"{fit_s:6.0f}" if fit_s is not None else f"{'':6s}"]
        d, g = statistics.mean(direct), statistics.mean(generated)
        print(f"{label:40s} {' '.join(cols)} {d:6.1f} {g:6.1f} {d - g:6.2f} {min(generated):6.1f} "
              f"{sum(v < 55 for v in generated):4d} "
              f"{statistics.mean(seen_gen) if seen_gen else float('nan'):6.1f}", flush=True)

    # Each unseen task's directly trained model (the best of its checkpoints), per grid.
    direct_of = {kind: [max(100 * grid.metrics(i)["balanced_accuracy"]
                            for i, t in enumerate(tasks) if t == bits) for bits in unseen]
                 for kind, grid in grids.items()}

    for kind, grid in grids.items():
        seen_direct = [max(100 * grid.metrics(i)["balanced_accuracy"]
                           for i, t in enumerate(tasks) if t == bits) for bits in seen_eval]
        print(f"{kind}: the {len(seen_eval)} seen tasks of the 'seen' column, directly trained: "
              f"{statistics.mean(seen_direct):.1f}")
        # What copying a trained model gives: the seen task nearest in bits (its checkpoints'
        # mean), and the best of all seen task models picked with the unseen task's test labels
        # (an oracle: no generator is told those).
        direct, near, best = direct_of[kind], [], []
        for bits in unseen:
            dist = {i: _hamming(tasks[i], bits) for i in keep}
            low = min(dist.values())
            near.append(_bacc([grid[i] for i in keep if dist[i] == low], model, x_te, y_te, bits))
            best.append(max(accuracies([grid[i] for i in keep], model, x_te,
                                       relabel(y_te, bits), "balanced_accuracy")))
        line(f"{kind}: copy of the nearest seen task", None, None, None, direct, near, None)
        line(f"{kind}: best seen model (oracle)", None, None, None, direct, best, None)

    for kind, method, rounds, per_task in variants:
        grid = grids[kind]
        train = grid.subset(keep)
        spec = structure_for(train, None if args.arch != "conv1d" else model)
        ratio = basin_test(train, spec).median
        t0 = time.time()
        if method != "none":
            train = align(train, None if args.arch != "conv1d" else model, method=method,
                          spec=spec, inputs=x_tr[:512], rounds=rounds,
                          task_runs="auto" if per_task else "keep")
        align_s = time.time() - t0
        # With :task, what pg.align and RPG() do with a cold grid by themselves: a state per
        # task, and an unseen task generated as its nearest seen task. Without, one
        # permutation state for the whole grid (what RPG did before it checked the spread).
        gen, fit_s = fit(train, args.preset, args.steps,
                         **({} if per_task else {"permutation_state": "run"}))
        direct = direct_of[kind]
        generated = [_bacc(gen.sample(args.samples, condition=bits, seed=0), model, x_te, y_te,
                           bits) for bits in unseen]
        seen_gen = [_bacc(gen.sample(args.samples, condition=bits, seed=0), model, x_te, y_te,
                          bits) for bits in seen_eval]
        label = f"{kind}, " + ("unaligned" if method == "none" else f"aligned ({method}"
                               + (f", {rounds} rounds)" if rounds != 1 else ")"))
        label += ", a run per task" if per_task else ""
        line(label, ratio, align_s, fit_s, direct, generated, seen_gen)
        if gen._independent_tasks:  # the same generator, fed the unseen bits themselves
            gen.config.unseen_task = "given"
            given = [_bacc(gen.sample(args.samples, condition=bits, seed=0), model, x_te, y_te,
                           bits) for bits in unseen]
            line("  the same, unseen_task='given'", None, None, None, direct, given, None)


# ----------------------------------------------------------------------------- (a') neighbours

def _nearest_tasks(tasks: list[str], bits: str, k: int) -> list[int]:
    """Indices of one checkpoint each of the k seen tasks nearest to `bits` (Hamming, then
    index): what a generator that interpolates seen tasks would have to combine."""
    out, taken = [], set()
    for i in sorted(range(len(tasks)), key=lambda i: (_hamming(tasks[i], bits), i)):
        if tasks[i] not in taken:
            taken.add(tasks[i])
            out.append(i)
            if len(out) == k:
                break
    return out


def _ensemble_bacc(sds, model, x, y, bits) -> float:
    """Balanced accuracy of the mean of the models' softmax outputs: a combination in function
    space, which no single network of the architecture need be able to compute."""
    from paramgen.evaluation.core import load_into

    with torch.no_grad():
        probs = []
        for sd in sds:
            load_into(model, sd)
            probs.append(torch.softmax(model(x), dim=-1))
    pred = torch.stack(probs).mean(0).argmax(-1)
    return 100 * float(score(pred, relabel(y, bits), "balanced_accuracy"))


def _ridge_models(ckpts, tasks: list[str], unseen: list[str], lam: float) -> list[dict]:
    """A least-squares map from task bits (+-1 and a bias) to the flat parameters of the seen
    task models, applied to the unseen bits: the smooth dependence a conditioned generator
    would learn if the parameters varied smoothly with the task."""
    keys = [k for k in ckpts.keys if ckpts.spec[k][1].is_floating_point]
    def code(bits):
        return [2.0 * float(c) - 1 for c in bits] + [1.0]
    x = torch.tensor([code(t) for t in tasks], dtype=torch.float64)
    w = torch.stack([torch.cat([ckpts[i][k].flatten().double() for k in keys])
                     for i in range(len(ckpts))])
    coef = torch.linalg.solve(x.T @ x + lam * torch.eye(x.shape[1], dtype=torch.float64), x.T @ w)
    out = []
    for bits in unseen:
        flat, sd, o = torch.tensor(code(bits), dtype=torch.float64) @ coef, dict(ckpts[0]), 0
        for k in keys:
            n = sd[k].numel()
            sd[k] = flat[o:o + n].reshape(sd[k].shape).to(sd[k].dtype)
            o += n
        out.append(sd)
    return out


def part_neighbours(args) -> None:
    x_tr, _, x_te, y_te = load(args.data)
    in_shape = tuple(x_tr.shape[1:])
    model = make_model(args.arch, in_shape, 2, 0).eval()
    grid = make_grid(args, warm=args.warm)
    tasks = [grid.provenance(i)["task"] for i in range(len(grid))]
    seen, unseen = split_tasks(tasks, args.holdout, 0)
    unseen = unseen[:args.max_unseen]
    keep = [i for i, t in enumerate(tasks) if t in set(seen)]
    train = grid.subset(keep)
    seen_tasks = [tasks[i] for i in keep]
    direct = [max(100 * grid.metrics(i)["balanced_accuracy"] for i, t in enumerate(tasks)
                  if t == bits) for bits in unseen]
    kind = "warm" if args.warm else "cold"
    print(f"\n(a') {kind} task grid of {args.arch} on {args.data}: {len(seen)} seen tasks, "
          f"{len(unseen)} unseen; each unseen task from the k seen tasks nearest in bits "
          "(one checkpoint each); balanced accuracy (%)")
    print(f"{'combination':56s} {'k':>2s} {'mean':>6s} {'gap':>6s} {'worst':>6s} {'<55%':>4s}")
    d = statistics.mean(direct)

    def line(label, k, values):
        print(f"{label:56s} {k:>2} {statistics.mean(values):6.1f} "
              f"{d - statistics.mean(values):6.2f} {min(values):6.1f} "
              f"{sum(v < 55 for v in values):4d}", flush=True)

    print(f"{'directly trained':56s} {'':>2s} {d:6.1f} {0:6.2f} {min(direct):6.1f} "
          f"{sum(v < 55 for v in direct):4d}")
    ks = [k for k in args.neighbours if k > 0]
    for k in ks:
        line("softmax mean of the models (function space)", k,
             [_ensemble_bacc([train[i] for i in _nearest_tasks(seen_tasks, b, k)], model, x_te,
                             y_te, b) for b in unseen])
    spec = structure_for(train, None if args.arch != "conv1d" else model)
    for method, rounds in [("none", 1)] + [(m, r) for m in args.methods for r in (1, 3)]:
        c = train if method == "none" else align(
            train, None if args.arch != "conv1d" else model, method=method, spec=spec,
            inputs=x_tr[:512], rounds=rounds, task_runs="keep")
        label = "unaligned" if method == "none" else f"aligned ({method}, {rounds} round" \
            + ("s)" if rounds > 1 else ")")
        for k in ks:
            means = []
            for bits in unseen:
                idx = _nearest_tasks(seen_tasks, bits, k)
                means.append(_bacc([{key: torch.stack([c[i][key] for i in idx]).mean(0)
                                     if c[0][key].is_floating_point() else c[0][key]
                                     for key in c.keys}], model, x_te, y_te, bits))
            line(f"{label}: weight mean", k, means)
        ridge = _ridge_models(c, seen_tasks, unseen, lam=1.0)
        line(f"{label}: ridge map bits -> weights", "", [_bacc([sd], model, x_te, y_te, b)
                                                           for sd, b in zip(ridge, unseen)])


# ----------------------------------------------------------------------------- (c) cost

def part_cost(args) -> None:
    from paramgen.align import apply_permutations, random_permutations

    print("\n(c) cost of aligning N checkpoints (weight matching, one permutation per "
          "checkpoint), mlp-family depth 2 on mnist1d inputs, one thread")
    print(f"{'parameters':>10s} {'groups':>6s} {'units':>6s} {'N':>5s} {'trace s':>7s} "
          f"{'align s':>8s} {'s / ckpt':>8s}")
    for target in args.sizes:
        model = pg.zoo.create("mlp-family", (40,), 10, seed=0, target_params=target)
        base = {k: v.detach().clone() for k, v in model.state_dict().items()}
        info = {"arch": "mlp-family", "in_shape": [40], "num_classes": 10,
                "model_kwargs": {"target_params": target}}
        t0 = time.time()
        spec = structure_for(pg.CheckpointSet.from_state_dicts([base], info=info))
        trace_s = time.time() - t0
        for n in args.counts:
            gen = torch.Generator().manual_seed(n)
            sds = [apply_permutations({k: v + 0.01 * torch.randn(v.shape, generator=gen)
                                       for k, v in base.items()}, spec,
                                      random_permutations(spec, seed=i)) for i in range(n)]
            ckpts = pg.CheckpointSet.from_state_dicts(sds, info=info)
            t0 = time.time()
            align(ckpts, spec=spec)
            dt = time.time() - t0
            params = sum(v.numel() for v in base.values())
            print(f"{params:10,d} {len(spec.groups):6d} {sum(spec.groups.values()):6d} {n:5d} "
                  f"{trace_s:7.2f} {dt:8.2f} {dt / n:8.3f}", flush=True)


# ----------------------------------------------------------------------------- (d) barrier

def part_barrier(args) -> None:
    from paramgen.collect import collect

    print("\n(d) interpolation barrier between two independent runs (test set; loss barrier = "
          "max rise of the loss above the straight line between the ends; accuracy in %)")
    print(f"{'model':22s} {'alignment':12s} {'loss barrier':>12s} {'acc ends':>11s} "
          f"{'acc t=0.5':>9s} {'acc barrier':>11s}")
    for arch, data in args.pairs:
        path = Path(args.workdir) / f"pair-{arch}-{data}"
        if not (path / "manifest.json").exists():
            collect(arch, data, path, n=1, runs=2, progress=False)
        ckpts = pg.CheckpointSet.load(path)
        model = build_model(ckpts.info)
        x_tr, _, x, y = load(data)
        for method in ["none"] + args.methods:
            c = ckpts if method == "none" else align(ckpts, method=method)
            b = barrier(model, c[0], c[1], x, y)
            acc = [100 * a for a in b["accuracy"]]
            print(f"{arch + ' / ' + data:22s} {method:12s} {b['loss_barrier']:12.3f} "
                  f"{acc[0]:5.1f} {acc[-1]:5.1f} {acc[len(acc) // 2]:9.1f} "
                  f"{100 * b['accuracy_barrier']:11.1f}", flush=True)


# ----------------------------------------------------------------------------- distance test

def part_detect(args) -> None:
    print("\ndistance test (paramgen.align.basin_test): distance to checkpoint 0 after / before "
          "weight matching, for checkpoints of other origins")
    print(f"{'collection':48s} {'ckpts':>6s} {'pairs':>5s} {'median':>6s} {'min':>5s} "
          f"{'max':>5s}  verdict")
    for folder in args.ckpts:
        ckpts = pg.CheckpointSet.load(folder)
        if args.runs_of is not None:  # one run of a multi-run collection
            ckpts = ckpts.subset([i for i, r in enumerate(ckpts.runs) if r == args.runs_of])
        model = TinyConv1d() if ckpts.info.get("model") == "conv1d" else None
        test = basin_test(ckpts, structure_for(ckpts, model))
        verdict = "several basins" if test.several_basins else "one basin"
        print(f"{folder[-48:]:48s} {len(ckpts):6d} {len(test.ratios):5d} {test.median:6.2f} "
              f"{min(test.ratios):5.2f} {max(test.ratios):5.2f}  {verdict}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=["runs", "grid", "neighbours", "cost", "barrier", "detect"])
    ap.add_argument("--ckpts", nargs="+", default=[], help="detect: collections to test")
    ap.add_argument("--runs-of", type=int, default=None, help="detect: only this run")
    ap.add_argument("--small", action="store_true", help="CI-sized run of the part")
    ap.add_argument("--workdir", default="runs/bench-align", help="cache of collections")
    ap.add_argument("--methods", nargs="+", default=["weights", "activations"],
                    choices=["weights", "activations"])
    ap.add_argument("--preset", default=None, help="RPG preset (default: cpu; cpu-tasks: grid)")
    ap.add_argument("--steps", type=int, default=None, help="RPG steps (default: the preset's)")
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--arch", default=None, help="runs: mlp; grid: conv1d (not in the zoo)")
    ap.add_argument("--data", default=None, help="runs, grid: mnist1d")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--run-variants", nargs="+", default=None,
                    choices=["none", "weights", "activations"],
                    help="runs: which collections to fit (default: none + --methods)")
    ap.add_argument("-n", type=int, default=10, help="runs: checkpoints per run")
    ap.add_argument("--tasks", type=int, default=330, help="grid: tasks collected")
    ap.add_argument("--holdout", type=float, default=0.1, help="grid: unseen fraction")
    ap.add_argument("--max-unseen", type=int, default=20)
    ap.add_argument("--task-steps", type=int, default=200, help="grid: optimizer steps a task")
    ap.add_argument("--lr", type=float, default=0.02, help="grid: Adam learning rate")
    ap.add_argument("--batch", type=int, default=512, help="grid: mini-batch size")
    ap.add_argument("--per-task", type=int, default=2, help="grid: checkpoints per task")
    ap.add_argument("--variants", nargs="+", default=None, metavar="GRID:METHOD[:ROUNDS][:task]",
                    help="grid: which fits, e.g. cold:none cold:weights cold:weights:3 (3 rounds) "
                         "cold:activations:task (a state per task where the task models lie in "
                         "several basins, as pg.align and RPG() choose; without :task one state "
                         "for the grid) warm:none (default: "
                         "cold unaligned, cold aligned by each --methods, warm unaligned)")
    ap.add_argument("--collect-only", action="store_true", help="grid: only make the grids")
    ap.add_argument("--neighbours", type=int, nargs="+", default=[1, 3, 5, 9],
                    help="neighbours: how many nearest seen tasks to combine")
    ap.add_argument("--warm", action="store_true", help="neighbours: the warm-started grid")
    ap.add_argument("--sizes", type=int, nargs="+", default=[2_000, 10_000, 100_000, 1_000_000])
    ap.add_argument("--counts", type=int, nargs="+", default=[10, 100])
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    grid_part = args.part in ("grid", "neighbours")
    args.arch = args.arch or ("conv1d" if grid_part else "mlp")
    args.data = args.data or "mnist1d"
    args.preset = args.preset or ("cpu-tasks" if grid_part else "cpu")
    args.pairs = [("mlp", "mnist1d"), ("cnn-s", "digits")]
    if args.small:
        args.runs, args.n, args.steps, args.samples = 2, 3, args.steps or 30, 3
        args.tasks, args.max_unseen, args.task_steps, args.batch = 16, 2, 30, 256
        args.sizes, args.counts, args.pairs = [2_000], [4], [("mlp", "digits")]
        args.workdir = args.workdir + "-small"
    t0 = time.time()
    {"runs": part_runs, "grid": part_grid, "neighbours": part_neighbours, "cost": part_cost,
     "barrier": part_barrier, "detect": part_detect}[args.part](args)
    print(f"\n({args.part}: {time.time() - t0:.0f} s on a shared 2-core machine, one thread)")


if __name__ == "__main__":
    main()
