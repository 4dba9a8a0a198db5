"""IGPG on a zoo of one residual family: seen collections (IGPG Table 3), unseen depth and pair.

    python benchmarks/igpg.py [--out runs/igpg_bench] [--zoo runs/igpg_zoo] [--n 5] [--runs 3]
        [--samples 10] [--preset cpu] [--coordinates run|collection|off] [--vq-steps N]
        [--prior-steps N] [--temperature T] [--residual-noise X] [--generator DIR]
        [--epochs 5] [--only fit|report]

The zoo (`paramgen.collect.collect("resmlp", data, folder, n=N, runs=RUNS,
model_kwargs={"depth": D})`, collected on the first run into --zoo): resmlp at depths 1-4 on digits and depths 1, 2, 4 on mnist1d is what IGPG is fitted on
(one generator for the seven collections). Held out, collected only as references: resmlp-3 on
mnist1d (an architecture/dataset pair never seen together: depth 3 was seen on digits, mnist1d
with other depths) and resmlp-6 on digits (a depth the zoo does not have, longer than the
prior's context: sampled window by window). Tables, printed and written to OUT/tables.md:

(a) per seen collection: originals vs IGPG, best / mean / std test accuracy (IGPG Table 3
    layout) with the VQ-VAE reconstruction, distinct samples (no two closer than half the
    closest pair of checkpoints), samples equal to a checkpoint, token sequences among the
    checkpoints, codes per chunk position, and runs per sample (for each tensor, the run whose
    mean it is nearest; 1 = the sample lies in one run's basin);
(b) zero-shot on the two held-out targets: IGPG samples vs the directly trained models vs random
    init, plus the ablation "borrowed run means" (the source collection's per-run means,
    relocated by block position, with no VQ-VAE or prior);
(c) fine-tuning curves (accuracy per epoch) from IGPG samples vs random init, plotted to
    docs/img/igpg_transfer.png;
(d) fit time (wall and CPU seconds) and sampling time per model.

One torch thread; the machine is shared, so wall times are upper bounds (load averages printed).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import torch

import paramgen as pg
from paramgen import io
from paramgen.collect import collect
from paramgen.evaluation.core import build_model, load_data_for, predictions, score
from paramgen.evaluation.finetune import finetune_curves
from paramgen.evaluation.tables import Table, summary
from paramgen.tokenize import Detokenizer, StateDictBuilder

TRAIN = [(d, "digits") for d in (1, 2, 3, 4)] + [(d, "mnist1d") for d in (1, 2, 4)]
HELD = {"unseen pair (resmlp-3 on mnist1d)": (3, "mnist1d"),
        "unseen depth (resmlp-6 on digits)": (6, "digits")}


def _name(depth: int, data: str) -> str:
    return f"resmlp{depth}_{data}"


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _load(out: Path, name: str) -> dict | None:
    p = out / f"{name}.json"
    return json.loads(p.read_text()) if p.is_file() else None


def _acc(sds, info) -> list[float]:
    x, y = load_data_for(info)
    return [float(v) for v in score(predictions(sds, build_model(info), x), y)]


def _flat(sd, keys) -> torch.Tensor:
    return torch.cat([sd[k].flatten().double() for k in keys])


def _distinct(samples, ckpts) -> tuple[int, float]:
    """Greedy count of samples no two of which are closer than half the closest pair of
    checkpoints; and that threshold."""
    keys = [k for k, v in ckpts[0].items() if v.is_floating_point()]
    F = torch.stack([_flat(c, keys) for c in ckpts])
    D = torch.cdist(F, F)
    D.fill_diagonal_(float("inf"))
    thr = 0.5 * float(D.min())
    S = [_flat(s, keys) for s in samples]
    kept: list[int] = []
    for i in range(len(S)):
        if all(float((S[i] - S[j]).norm()) >= thr for j in kept):
            kept.append(i)
    return len(kept), thr


def _runs_per_sample(samples, ckpts, runs) -> list[int]:
    """For each sample: how many runs its tensors are nearest to (by the run means)."""
    keys = [k for k, v in ckpts[0].items() if v.is_floating_point()]
    groups = sorted(set(runs))
    means = {k: {r: torch.stack([c[k].double() for c, rr in zip(ckpts, runs) if rr == r]).mean(0)
                 for r in groups} for k in keys}
    return [len({min(groups, key=lambda r: float((means[k][r] - s[k].double()).norm()))
                 for k in keys}) for s in samples]


def collect_zoo(zoo: Path, n: int, runs: int) -> dict[str, pg.CheckpointSet]:
    sets = {}
    for depth, data in TRAIN + list(HELD.values()):
        folder = zoo / _name(depth, data)
        if (folder / "manifest.json").is_file():
            sets[_name(depth, data)] = pg.CheckpointSet.load(folder)
        else:
            sets[_name(depth, data)] = collect("resmlp", data, folder, n=n, runs=runs,
                                               progress=False, model_kwargs={"depth": depth})
    return sets


def fit(args, sets, out: Path) -> pg.IGPG:
    gen_dir = Path(args.generator) if args.generator else out / "generator"
    if (gen_dir / "config.json").is_file():
        gen = pg.IGPG.from_pretrained(gen_dir)
        if args.residual_noise is not None:
            gen.config = gen.config.replace(residual_noise=args.residual_noise)
        return gen
    overrides = {k: v for k, v in (("vq_steps", args.vq_steps), ("prior_steps", args.prior_steps),
                                   ("coordinates", args.coordinates),
                                   ("residual_noise", args.residual_noise)) if v is not None}
    gen = pg.IGPG(preset=args.preset, **overrides)
    load0, t0, c0 = os.getloadavg()[0], time.time(), _cpu()
    gen.fit([sets[_name(*k)] for k in TRAIN], seed=0, workdir=out / "work", progress=False)
    gen.timings.update(wall_fit_s=time.time() - t0, cpu_fit_s=_cpu() - c0, load_avg_start=load0,
                       load_avg_end=os.getloadavg()[0])
    gen.save_pretrained(gen_dir)
    return gen


def borrowed_means(gen: pg.IGPG, like, dataset: str) -> list[dict]:
    """The ablation: each group's coordinate means of the borrowed source, decoded as they are
    (no VQ-VAE, no prior)."""
    target = gen._target(like, dataset, None)
    if target.coords is None:
        return []
    out = []
    for g in range(target.coords.groups):
        b = StateDictBuilder(target.tokenizer)
        d = Detokenizer(target.tokenizer, b)
        d.feed(target.coords.mean[g])
        d.close()
        out.append(b.result())
    return out


def evaluate(args, gen: pg.IGPG, sets, out: Path) -> None:
    T = args.temperature
    if _load(out, "seen") is None:
        rows = {}
        for key in TRAIN:
            s = sets[_name(*key)]
            ck, data = list(s), s.info["data"]
            t0 = time.time()
            sds = gen.sample(args.samples, like=ck[0], dataset=data, seed=1, temperature=T)
            per = (time.time() - t0) / args.samples
            toks = torch.stack([gen.encode(c, data)[0].flatten() for c in ck])
            distinct, thr = _distinct(sds, ck)
            keys = [k for k, v in ck[0].items() if v.is_floating_point()]
            F = torch.stack([_flat(c, keys) for c in ck])
            rows[_name(*key)] = dict(
                params=sum(v.numel() for v in ck[0].values() if v.is_floating_point()),
                original=_acc(ck, s.info), igpg=_acc(sds, s.info),
                recon=_acc([gen.reconstruct(c, data) for c in ck], s.info),
                distinct=distinct, threshold=thr,
                equal=sum(bool((F == _flat(x, keys)).all(1).any()) for x in sds),
                sequences=len({tuple(t.tolist()) for t in toks}),
                codes_per_position=sum(len(set(toks[:, p].tolist()))
                                       for p in range(toks.shape[1])) / toks.shape[1],
                runs_per_sample=_runs_per_sample(sds, ck, s.runs), s_per_sample=per)
            r = rows[_name(*key)]
            print(_name(*key), f"orig {100 * sum(r['original']) / len(ck):.2f} igpg "
                  f"{100 * sum(r['igpg']) / len(sds):.2f} distinct {distinct}", flush=True)
        io.write_json(out / "seen.json", rows)
    if _load(out, "transfer") is None:
        res = {}
        for label, (depth, data) in HELD.items():
            s = sets[_name(depth, data)]
            like = build_model(s.info).state_dict()
            t0 = time.time()
            sds = gen.sample(args.samples, like=like, dataset=data, seed=2, temperature=T)
            per = (time.time() - t0) / args.samples
            torch.manual_seed(0)    # the random-init row is the same on every run
            rand = [build_model(s.info).state_dict() for _ in range(args.samples)]
            inits = {f"IGPG sample {i}": sd for i, sd in enumerate(sds[:3])}
            inits["random init"] = None
            ft = finetune_curves(inits, s.info, epochs=args.epochs, lr=1e-3)
            res[label] = dict(igpg=_acc(sds, s.info), direct=_acc(list(s), s.info),
                              random=_acc(rand, s.info),
                              borrowed=_acc(borrowed_means(gen, like, data), s.info),
                              s_per_sample=per, **ft.to_dict())
            print(label, {k: round(100 * sum(v) / max(len(v), 1), 2) for k, v in res[label].items()
                          if k in ("igpg", "direct", "random", "borrowed")}, flush=True)
        io.write_json(out / "transfer.json", res)


def _bms(v) -> list[str]:
    if not v:
        return ["-", "-", "-"]
    s = summary(v)
    return [f"{100 * s['best']:.2f}", f"{100 * s['mean']:.2f}", f"{100 * s['std']:.2f}"]


def plot(tr: dict, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.8))
    for ax, (label, r) in zip(fig.subplots(1, len(tr)), tr.items()):
        for name, curve in r["curves"].items():
            style = dict(color="0.4", lw=2, ls="--") if name == "random init" else dict(alpha=0.8)
            ax.plot(r["epochs"], [100 * v for v in curve], marker="o", ms=3, label=name, **style)
        ax.axhline(100 * summary(r["direct"])["mean"], color="k", lw=0.8, ls=":",
                   label="directly trained (mean)")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("fine-tuning epoch")
        ax.set_ylabel("test accuracy (%)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    FigureCanvasAgg(fig).print_png(str(path))


def report(out: Path, img: Path | None) -> str:
    seen, tr = _load(out, "seen"), _load(out, "transfer")
    if seen is None:
        return "no results yet: run without --only report first"
    cfg = out / "generator" / "config.json"
    t = json.loads(cfg.read_text()).get("timings", {}) if cfg.is_file() else {}
    parts = [Table(
        headers=["collection", "params", "orig best", "orig mean", "orig std", "VQ recon mean",
                 "IGPG best", "IGPG mean", "IGPG std", "IGPG - orig", "distinct", "= ckpt",
                 "token seqs", "codes/pos", "runs/sample"],
        rows=[[k.replace("_", " on ").replace("resmlp", "resmlp-"), str(r["params"])]
              + _bms(r["original"]) + [f"{100 * summary(r['recon'])['mean']:.2f}"]
              + _bms(r["igpg"])
              + [f"{100 * (summary(r['igpg'])['mean'] - summary(r['original'])['mean']):+.2f}",
                 f"{r['distinct']}/{len(r['igpg'])}", str(r["equal"]),
                 f"{r['sequences']}/{len(r['original'])}", f"{r['codes_per_position']:.2f}",
                 f"{max(r['runs_per_sample'])}"]
              for k, r in seen.items()],
        title="(a) seen collections, test accuracy (%): originals vs one IGPG for the zoo",
        notes=["distinct: samples no two of which are closer (L2) than half the closest pair of "
               "the collection's checkpoints; = ckpt: samples equal to a checkpoint; token seqs: "
               "distinct VQ-VAE token sequences among the checkpoints; codes/pos: distinct "
               "codes per token position among them; runs/sample: the most runs any sample's "
               "tensors are nearest to (1: every sample in one run's basin)"]).markdown()]
    if tr is not None:
        parts.append(Table(
            headers=["target", "directly trained", "IGPG zero-shot", "random init",
                     "borrowed run means (no VQ-VAE/prior)", "IGPG - direct (mean)"],
            rows=[[k, "/".join(_bms(r["direct"])), "/".join(_bms(r["igpg"])),
                   "/".join(_bms(r["random"])), "/".join(_bms(r["borrowed"])),
                   f"{100 * (summary(r['igpg'])['mean'] - summary(r['direct'])['mean']):+.2f}"]
                  for k, r in tr.items()],
            title="(b) outside the zoo, zero-shot test accuracy (%), best/mean/std").markdown())
        for k, r in tr.items():
            parts.append(Table(
                headers=["init"] + [f"epoch {e}" for e in r["epochs"]],
                rows=[[n] + [f"{100 * v:.1f}" for v in c] for n, c in r["curves"].items()],
                title=f"(c) {k}: test accuracy (%) while fine-tuning (AdamW lr 1e-3)").markdown())
        if img is not None:
            plot(tr, img)
    per = [r["s_per_sample"] for r in seen.values()]
    parts.append(
        f"(d) IGPG fit on the seven collections: {t.get('wall_fit_s', float('nan')):.0f} s wall, "
        f"{t.get('cpu_fit_s', float('nan')):.0f} s CPU (VQ-VAE {t.get('vqvae_s', float('nan')):.0f}"
        f" s, prior {t.get('prior_s', float('nan')):.0f} s wall; load average "
        f"{t.get('load_avg_start', float('nan')):.1f} at start, "
        f"{t.get('load_avg_end', float('nan')):.1f} at end); sampling "
        f"{min(per):.2f}-{max(per):.2f} s per model"
        + (", " + ", ".join(f"{k}: {r['s_per_sample']:.2f} s" for k, r in tr.items())
           if tr else ""))
    text = "\n\n".join(parts)
    io.write_text(out / "tables.md", text + "\n")
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/igpg_bench")
    p.add_argument("--zoo", default="runs/igpg_zoo")
    p.add_argument("--n", type=int, default=5, help="checkpoints per run")
    p.add_argument("--runs", type=int, default=3, help="training runs (seeds) per collection")
    p.add_argument("--samples", type=int, default=10)
    p.add_argument("--preset", default="cpu")
    p.add_argument("--coordinates", default=None, choices=["run", "collection", "off"])
    p.add_argument("--vq-steps", type=int, default=None)
    p.add_argument("--prior-steps", type=int, default=None)
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--residual-noise", type=float, default=None,
                   help="sampling option (with --generator: a fitted generator sampled anew)")
    p.add_argument("--generator", default=None,
                   help="a fitted generator folder to evaluate (default: OUT/generator)")
    p.add_argument("--epochs", type=int, default=5, help="fine-tuning epochs in (c)")
    p.add_argument("--img", default="docs/img/igpg_transfer.png")
    p.add_argument("--only", choices=["fit", "report"], default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.only != "report":
        sets = collect_zoo(Path(args.zoo), args.n, args.runs)
        gen = fit(args, sets, out)
        if args.only != "fit":
            evaluate(args, gen, sets, out)
    print(report(out, Path(args.img) if args.img else None))


if __name__ == "__main__":
    main()
