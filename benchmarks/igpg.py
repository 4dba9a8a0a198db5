"""IGPG on a mixed zoo: one generator for three architectures over two datasets.

    python benchmarks/igpg.py [--out runs/igpg_bench] [--zoo runs/igpg_zoo] [--n 30]
        [--runs 1] [--samples 10] [--preset cpu] [--vq-steps N] [--prior-steps N] [--temperature 0.7]
        [--top-k K] [--only igpg|rpg|report]

The zoo: cnn-s, mlp and resnet-mini, each collected (`paramgen collect`, n checkpoints) on digits and
on mnist1d. IGPG is fitted once on five of the six collections; resnet-mini on mnist1d is held
out as a dataset/architecture pair never seen together (each was seen with the other dataset /
other architectures). Tables, each printed and written to OUT/tables.md:

(a) per training collection: original checkpoints vs IGPG vs a per-collection RPG (`pg.RPG()`
    defaults), best / mean / std test accuracy (IGPG Table 3 layout, with the VQ-VAE
    reconstruction column), plus each IGPG sample's distance to its nearest checkpoint;
(b) an architecture the zoo did not contain (mlp with two hidden layers of 64 on digits; the zoo
    mlp has one): IGPG samples as initialisation vs random initialisation, fine-tuning curve;
(c) the held-out pair resnet-mini x mnist1d: zero-shot and fine-tuning, vs random init, next to
    that collection's originals (collected for reference, never trained on);
(d) fit time and sampling time per model.

Every stage caches its results in OUT (json) and is skipped when run again; `--only igpg` or
`--only rpg` runs one side (two processes can share the work), `--only report` prints tables.
One torch thread; the machine is shared, so times are upper bounds (the load average is printed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import torch

import paramgen as pg
from paramgen import io
from paramgen.collect import collect
from paramgen.evaluation.core import build_model, load_data_for, predictions, score
from paramgen.evaluation.finetune import finetune_curves
from paramgen.evaluation.tables import Table, summary

ARCHS = ("cnn-s", "mlp", "resnet-mini")
DATASETS = ("digits", "mnist1d")
HELD_OUT = ("resnet-mini", "mnist1d")
UNSEEN_ARCH = dict(arch="mlp", data="digits", model_kwargs={"hidden": [32]},
                   label="mlp 32 (zoo: mlp 64)")


def _name(arch: str, data: str) -> str:
    return f"{arch}_{data}"


def _load(out: Path, name: str) -> dict | None:
    p = out / f"{name}.json"
    return json.loads(p.read_text()) if p.is_file() else None


def _save(out: Path, name: str, obj: dict) -> None:
    io.write_json(out / f"{name}.json", obj)


def _accuracies(sds, info) -> list[float]:
    model = build_model(info)
    x, y = load_data_for(info)
    return [float(v) for v in score(predictions(sds, model, x), y)]


def _nearest(sds, ckpts) -> list[float]:
    """Each sample's L2 distance to its nearest checkpoint, relative to that checkpoint's norm."""
    keys = [k for k, v in ckpts[0].items() if v.is_floating_point()]
    flat = torch.stack([torch.cat([c[k].flatten().double() for k in keys]) for c in ckpts])
    out = []
    for sd in sds:
        v = torch.cat([sd[k].flatten().double() for k in keys])
        d = (flat - v).norm(dim=1)
        i = int(d.argmin())
        out.append(float(d[i] / flat[i].norm()))
    return out


def _distinct(sds) -> int:
    """How many of the samples differ from each other (exact equality of every value)."""
    seen: list[dict] = []
    for sd in sds:
        if not any(all(torch.equal(sd[k], o[k]) for k in sd) for o in seen):
            seen.append(sd)
    return len(seen)


SWEEP = ((1.0, None), (1.0, 5), (0.7, None), (0.5, None), (1.0, 1))


def collect_zoo(zoo: Path, n: int, runs: int = 1) -> dict[str, pg.CheckpointSet]:
    sets = {}
    for data in DATASETS:
        for arch in ARCHS:
            folder = zoo / _name(arch, data)
            if (folder / "manifest.json").is_file():
                sets[_name(arch, data)] = pg.CheckpointSet.load(folder)
            else:
                sets[_name(arch, data)] = collect(arch, data, folder, n=n, runs=runs,
                                                  progress=False)
    return sets


def run_igpg(args, sets: dict[str, pg.CheckpointSet], out: Path) -> None:
    train = [k for k in sets if k != _name(*HELD_OUT)]
    gen_dir = out / "igpg_generator"
    load0 = os.getloadavg()[0]
    if (gen_dir / "config.json").is_file():
        gen = pg.IGPG.from_pretrained(gen_dir)
    else:
        overrides = {k: v for k, v in (("vq_steps", args.vq_steps),
                                       ("prior_steps", args.prior_steps)) if v is not None}
        gen = pg.IGPG(preset=args.preset, **overrides)
        t0 = time.time()
        gen.fit([sets[k] for k in train], seed=0, workdir=out / "igpg_work", progress=True)
        gen.timings["wall_fit_s"] = time.time() - t0
        gen.timings["load_avg_start"] = load0
        gen.timings["load_avg_end"] = os.getloadavg()[0]
        gen.save_pretrained(gen_dir)
    # sampling settings may change after training (the sweep (e) shows the choice)
    gen.config = gen.config.replace(temperature=args.temperature, top_k=args.top_k)
    if _load(out, "igpg_a") is None:
        rows = {}
        for k in train:
            s = sets[k]
            data = s.info["data"]
            t0 = time.time()
            sds = gen.sample(args.samples, like=s[0], dataset=data, seed=1)
            sample_s = (time.time() - t0) / args.samples
            rec = [gen.reconstruct(s[i], data) for i in range(0, len(s), max(1, len(s) // 5))]
            rows[k] = {"original": _accuracies(list(s), s.info),
                       "igpg": _accuracies(sds, s.info),
                       "vq_recon": _accuracies(rec, s.info),
                       "nearest": _nearest(sds, s),
                       "equal_to_checkpoint": sum(
                           any(all(torch.equal(sd[key], c[key]) for key in sd) for c in s)
                           for sd in sds),
                       "sample_s_per_model": sample_s, "distinct": _distinct(sds),
                       "params": sum(v.numel() for v in s[0].values() if v.is_floating_point())}
            print(k, {m: round(100 * sum(v) / len(v), 2) for m, v in rows[k].items()
                      if m in ("original", "igpg", "vq_recon")}, flush=True)
        _save(out, "igpg_a", {"rows": rows, "timings": gen.timings})
    if _load(out, "igpg_sweep") is None:
        sweep = {}
        for temperature, top_k in SWEEP:
            row = {}
            for k in train:
                s = sets[k]
                sds = gen.sample(args.samples, like=s[0], dataset=s.info["data"], seed=1,
                                 temperature=temperature, top_k=top_k)
                row[k] = {"acc": _accuracies(sds, s.info), "distinct": _distinct(sds)}
            sweep[f"T={temperature}, top-k={top_k or '-'}"] = row
        _save(out, "igpg_sweep", sweep)
    if _load(out, "igpg_b") is None:
        spec = UNSEEN_ARCH
        info = {"arch": spec["arch"], "in_shape": list(pg.data.input_shape(spec["data"])),
                "num_classes": 10, "data": spec["data"], "model_kwargs": spec["model_kwargs"]}
        like = build_model(info).state_dict()
        sds = gen.sample(3, like=like, dataset=spec["data"], seed=2)
        inits = {f"IGPG sample {i}": sd for i, sd in enumerate(sds)}
        inits["random init"] = None
        ft = finetune_curves(inits, info, epochs=args.finetune_epochs, lr=1e-3)
        _save(out, "igpg_b", {"label": spec["label"], **ft.to_dict()})
        print(ft, flush=True)
    if _load(out, "igpg_c") is None:
        s = sets[_name(*HELD_OUT)]
        sds = gen.sample(args.samples, like=s[0], dataset=HELD_OUT[1], seed=3)
        zero = _accuracies(sds, s.info)
        inits = {f"IGPG sample {i}": sd for i, sd in enumerate(sds[:3])}
        inits["random init"] = None
        ft = finetune_curves(inits, s.info, epochs=args.finetune_epochs, lr=1e-3)
        _save(out, "igpg_c", {"original": _accuracies(list(s), s.info), "igpg": zero,
                              **ft.to_dict()})
        print(ft, flush=True)


def run_rpg(args, sets: dict[str, pg.CheckpointSet], out: Path) -> None:
    for k, s in sets.items():
        if k == _name(*HELD_OUT) or _load(out, f"rpg_{k}") is not None:
            continue
        gen = pg.RPG()
        t0 = time.time()
        gen.fit(s, seed=0, workdir=out / "rpg_work" / k, progress=False)
        fit_s = time.time() - t0
        t0 = time.time()
        sds = gen.sample(args.samples, seed=1)
        sample_s = (time.time() - t0) / args.samples
        _save(out, f"rpg_{k}", {"rpg": _accuracies(sds, s.info), "fit_s": fit_s,
                                "sample_s_per_model": sample_s, "distinct": _distinct(sds), "preset": gen.preset,
                                "load_avg": os.getloadavg()[0]})
        print(k, "rpg", round(100 * sum(_accuracies(sds, s.info)) / args.samples, 2), flush=True)


def _bms(values) -> list[str]:
    if not values:
        return ["-", "-", "-"]
    s = summary(values)
    return [f"{100 * s['best']:.2f}", f"{100 * s['mean']:.2f}", f"{100 * s['std']:.2f}"]


def report(sets, out: Path) -> str:
    a = _load(out, "igpg_a")
    if a is None:
        return "no IGPG results yet: run without --only report first"
    parts = []
    rows, timing_rows = [], []
    for k, r in a["rows"].items():
        rpg = _load(out, f"rpg_{k}") or {}
        o, g = summary(r["original"]), summary(r["igpg"])
        rows.append([k.replace("_", " on "), str(r["params"])] + _bms(r["original"])
                    + [f"{100 * summary(r['vq_recon'])['mean']:.2f}"] + _bms(r["igpg"])
                    + _bms(rpg.get("rpg", [])) + [f"{100 * (g['mean'] - o['mean']):+.2f}",
                                                  f"{min(r['nearest']):.4f}",
                                                  str(r["equal_to_checkpoint"]),
                                                  str(r.get("distinct", "-"))])
        timing_rows.append([k.replace("_", " on "), f"{r['sample_s_per_model']:.2f}",
                            f"{rpg['fit_s']:.0f}" if rpg else "-",
                            f"{rpg['sample_s_per_model']:.2f}" if rpg else "-"])
    parts.append(Table(
        headers=["collection", "params", "orig best", "orig mean", "orig std", "VQ recon mean",
                 "IGPG best", "IGPG mean", "IGPG std", "RPG best", "RPG mean", "RPG std",
                 "IGPG - orig (mean)", "min dist to ckpt", "= ckpt", "distinct"],
        rows=rows, title="(a) test accuracy (%) per collection: originals vs one IGPG for the "
                         "whole zoo vs one RPG per collection",
        notes=["min dist to ckpt: smallest L2 distance of an IGPG sample to its nearest "
               "checkpoint, relative to that checkpoint's norm; = ckpt: samples identical to a "
               "checkpoint; distinct: how many of the samples differ from one another"]
    ).markdown())
    sw = _load(out, "igpg_sweep")
    if sw is not None:
        names = list(next(iter(sw.values())))
        parts.append(Table(
            headers=["sampling"] + [n.replace("_", " on ") for n in names],
            rows=[[label] + [f"{100 * (summary(r[n]['acc'])['mean'] - summary(a['rows'][n]['original'])['mean']):+.2f} "
                             f"(min {100 * min(r[n]['acc']):.1f}, {r[n]['distinct']} distinct)"
                             for n in names] for label, r in sw.items()],
            title="(e) sampling temperature and top-k: IGPG mean minus originals' mean "
                  "(points), worst sample, distinct samples (same generator)").markdown())
    t = a["timings"]
    parts.append(Table(
        headers=["collection", "IGPG sampling s/model", "RPG fit s", "RPG sampling s/model"],
        rows=timing_rows,
        title=f"(d) time (one thread, shared machine): IGPG fit on the whole zoo "
              f"{t.get('wall_fit_s', t.get('fit_s', math.nan)):.0f} s (VQ-VAE "
              f"{t.get('vqvae_s', math.nan):.0f} s, prior {t.get('prior_s', math.nan):.0f} s; "
              f"load average {t.get('load_avg_start', math.nan):.1f} at start, "
              f"{t.get('load_avg_end', math.nan):.1f} at end)").markdown())
    b = _load(out, "igpg_b")
    if b is not None:
        parts.append(Table(
            headers=["init"] + [f"epoch {e}" for e in b["epochs"]],
            rows=[[n] + [f"{100 * v:.1f}" for v in c] for n, c in b["curves"].items()],
            title=f"(b) architecture outside the zoo, {b['label']}, digits: test accuracy (%) "
                  "while fine-tuning (AdamW lr 1e-3)").markdown())
    c = _load(out, "igpg_c")
    if c is not None:
        parts.append(Table(
            headers=["init"] + [f"epoch {e}" for e in c["epochs"]],
            rows=[[n] + [f"{100 * v:.1f}" for v in cv] for n, cv in c["curves"].items()],
            title="(c) resnet-mini on mnist1d, a pair never seen together: test accuracy (%) "
                  "while fine-tuning",
            notes=[f"zero-shot IGPG samples (n={len(c['igpg'])}): best/mean/std "
                   f"{'/'.join(_bms(c['igpg']))}; the held-out collection's originals "
                   f"(never trained on): {'/'.join(_bms(c['original']))}"]).markdown())
    text = "\n\n".join(parts)
    io.write_text(out / "tables.md", text + "\n")
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/igpg_bench")
    p.add_argument("--zoo", default="runs/igpg_zoo")
    p.add_argument("--n", type=int, default=30, help="checkpoints per run")
    p.add_argument("--runs", type=int, default=1,
                   help="training runs (seeds) per collection: distinct basins")
    p.add_argument("--samples", type=int, default=10)
    p.add_argument("--preset", default="cpu")
    p.add_argument("--vq-steps", type=int, default=None)
    p.add_argument("--prior-steps", type=int, default=None)
    p.add_argument("--finetune-epochs", type=int, default=5)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--only", choices=["igpg", "rpg", "report"], default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sets = collect_zoo(Path(args.zoo), args.n, args.runs)
    if args.only in (None, "igpg"):
        run_igpg(args, sets, out)
    if args.only in (None, "rpg"):
        run_rpg(args, sets, out)
    print(report(sets, out))


if __name__ == "__main__":
    main()
