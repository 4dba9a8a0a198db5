"""Original checkpoints vs p-diff vs RPG on the same collections (RPG Table 8 layout).

    python benchmarks/compare_methods.py [--out runs/compare] [--n 50] [--samples 50]
        [--pdiff-steps N] [--rpg-steps N] [--collections cnn-s,resnet-partial]

Two collections on digits, collected on first use (and resumed if interrupted; an existing
collection folder is used as it is, its first ``--n`` checkpoints):

* ``cnn-s``: the Model Zoo CNN-s, all 2,464 parameters generated (full generation).
* ``resnet-partial``: ResNet-mini whose last two BatchNorm layers were fine-tuned with the rest
  frozen (``trainable="last-norm-2"``), p-diff's partial setting: both generators learn and
  generate only those tensors (48 values); everything else is the collection's, copied from its
  first checkpoint. (RPG has no key selection of its own, so it is trained on the same
  sub-state-dicts and its samples are completed the same way.)

Both generators use their ``cpu`` presets (p-diff ``cpu-partial`` on the partial collection);
``--pdiff-steps`` / ``--rpg-steps`` shorten training for a quick check. Every model, original or
generated, is scored by ``paramgen.evaluate`` on the digits test split; the table shows best /
mean / std of test accuracy (%) per method, one column group per collection. Training resumes
from ``OUT/<collection>/<method>/work`` and the trained generators are saved next to it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from paramgen import evaluate as ev
from paramgen.checkpoints import CheckpointSet
from paramgen.collect import collect
from paramgen.methods import PDiff, RPG
from paramgen.methods.pdiff import resolve_keys

COLLECTIONS: dict[str, dict[str, Any]] = {
    "cnn-s": dict(arch="cnn-s", data="digits", trainable="all", keys=None,
                  pdiff_preset="cpu", label="CNN-s digits (full)"),
    "resnet-partial": dict(arch="resnet-mini", data="digits", trainable="last-norm-2",
                           keys="last-norm-2", pdiff_preset="cpu-partial",
                           label="ResNet-mini digits (last 2 BN)"),
}


def _subset(ckpts: CheckpointSet, keys: list[str]) -> CheckpointSet:
    """The same checkpoints restricted to ``keys`` (for RPG, which generates every key it sees)."""
    return CheckpointSet.from_state_dicts([{k: sd[k] for k in keys} for sd in ckpts],
                                          info=ckpts.info)


def _completer(reference: Mapping[str, torch.Tensor]) -> Callable[[dict], dict]:
    """Fill the keys a partial sample lacks from ``reference``, in the reference's key order."""
    def complete(sample: dict) -> dict:
        return {k: sample[k] if k in sample else v.clone() for k, v in reference.items()}

    return complete


def _train(gen, ckpts, steps: int | None, folder: Path, seed: int):
    """Fit with resume from ``folder/work``; save the result to ``folder/generator``."""
    t0 = time.perf_counter()
    gen.fit(ckpts, steps=steps, seed=seed, workdir=folder / "work", progress=True)
    seconds = time.perf_counter() - t0
    gen.save_pretrained(folder / "generator")
    return gen, seconds


def evaluate_collection(name: str, args: argparse.Namespace) -> dict[str, Any]:
    spec = COLLECTIONS[name]
    root = Path(args.out) / name
    folder = root / "ckpts"
    ckpts = CheckpointSet.load(folder) if (folder / "manifest.json").is_file() else None
    if ckpts is None or len(ckpts) < args.n:
        # Absent or unfinished: collect (collect resumes a folder it started itself).
        print(f"\n== {spec['label']}: collecting {args.n} checkpoints ...", flush=True)
        ckpts = collect(spec["arch"], spec["data"], folder, n=args.n,
                        trainable=spec["trainable"], progress=False)
    else:
        print(f"\n== {spec['label']}: {len(ckpts)} checkpoints in {folder}", flush=True)
        ckpts = ckpts.subset(range(args.n))
    reference = ckpts[0]
    keys = resolve_keys(reference, spec["keys"])
    model = ev.build_model(ev.ModelSpec.from_info(ckpts.info, str(root / "ckpts")))
    x, y = ev.load_data_for(ckpts.info)

    def scores(sds: list[dict]) -> list[float]:
        return [float(s) for s in ev.score(ev.predictions(sds, model, x), y)]

    out: dict[str, Any] = {"label": spec["label"], "values": ckpts.num_params,
                           "generated_values": sum(reference[k].numel() for k in keys
                                                   if reference[k].is_floating_point()),
                           "scores": {"original": scores([ckpts[i] for i in range(len(ckpts))])},
                           "seconds": {}}

    print(f"== {spec['label']}: p-diff ({spec['pdiff_preset']}) ...", flush=True)
    pdiff, secs = _train(PDiff(preset=spec["pdiff_preset"]), ckpts, args.pdiff_steps,
                         root / "pdiff", args.seed)
    out["seconds"]["p-diff"] = secs
    out["scores"]["p-diff"] = scores(pdiff.sample(args.samples, seed=args.seed + 1))

    print(f"== {spec['label']}: RPG (cpu) ...", flush=True)
    partial = spec["keys"] is not None
    rpg_data = _subset(ckpts, keys) if partial else ckpts
    rpg, secs = _train(RPG(preset="cpu"), rpg_data, args.rpg_steps, root / "rpg", args.seed)
    out["seconds"]["RPG"] = secs
    samples = rpg.sample(args.samples, seed=args.seed + 1)
    if partial:
        samples = [_completer(reference)(s) for s in samples]
    out["scores"]["RPG"] = scores(samples)
    return out


def table(results: list[dict[str, Any]]) -> ev.Table:
    """Rows original / p-diff / RPG; per collection best, mean, std of accuracy (%)."""
    headers = ["method"]
    for r in results:
        short = r["label"]
        headers += [f"{short} best", "mean", "std"]
    rows = []
    for method in ("original", "p-diff", "RPG"):
        row = [method]
        for r in results:
            s = ev.summary(r["scores"][method])
            row += [f"{100 * s['best']:.2f}", f"{100 * s['mean']:.2f}", f"{100 * s['std']:.2f}"]
        rows.append(row)
    notes = [f"{r['label']}: {len(r['scores']['original'])} originals, "
             f"{len(r['scores']['p-diff'])} samples per generator, {r['generated_values']:,} "
             f"of {r['values']:,} values generated; training s: "
             + ", ".join(f"{m} {s:.0f}" for m, s in r["seconds"].items()) for r in results]
    return ev.Table(headers=headers, rows=rows,
                    title="test accuracy (%) of original vs generated models", notes=notes)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/compare", help="collections, generators, table")
    ap.add_argument("--collections", default="cnn-s,resnet-partial",
                    help=f"comma separated, from {sorted(COLLECTIONS)}")
    ap.add_argument("--n", type=int, default=50, help="checkpoints per collection")
    ap.add_argument("--samples", type=int, default=50, help="models sampled per generator")
    ap.add_argument("--pdiff-steps", type=int, default=None,
                    help="p-diff training steps (default: the preset's)")
    ap.add_argument("--rpg-steps", type=int, default=None,
                    help="RPG training steps (default: the preset's)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    names = [c.strip() for c in args.collections.split(",") if c.strip()]
    unknown = [c for c in names if c not in COLLECTIONS]
    if unknown:
        ap.error(f"unknown collections {unknown}; known: {sorted(COLLECTIONS)}")
    results = [evaluate_collection(name, args) for name in names]
    t = table(results)
    print("\n" + t.text())
    from paramgen import io

    io.write_text(Path(args.out) / "compare.md", t.markdown() + "\n")
    io.write_json(Path(args.out) / "compare.json", results)
    print(f"\nwrote {Path(args.out) / 'compare.md'}")


if __name__ == "__main__":
    main()
