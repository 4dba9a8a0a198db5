"""`paramgen demo`: the whole pipeline on digits, offline, in a few minutes on a laptop CPU.

collect checkpoints of a small zoo CNN -> train RPG (cpu preset) -> sample models -> evaluate.
Every stage caches what it made under --out, so a second run takes seconds; --fresh redoes it,
deleting only the files an earlier demo wrote there (listed in --out's `.paramgen-output`).
"""

from __future__ import annotations

import argparse
import time

from paramgen.evaluation.tables import pct

HELP = "the whole pipeline on digits in a few minutes: collect, train, sample, evaluate"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", metavar="DIR",
                        help="where the demo keeps its checkpoints, generator, samples and report "
                             "(default: %(default)s)")
    parser.add_argument("--arch", default="cnn-s", help="zoo architecture (default: %(default)s)")
    parser.add_argument("--data", default="digits", help="dataset (default: %(default)s)")
    parser.add_argument("--num-ckpts", type=int, default=50,
                        help="checkpoints to collect, split evenly over --runs (default: "
                             "%(default)s)")
    parser.add_argument("--runs", type=int, default=5,
                        help="independent training runs the checkpoints come from, each spread "
                             "over --spread epochs of continued training (default: %(default)s)")
    parser.add_argument("--spread", type=float, default=5.0, metavar="EPOCHS",
                        help="epochs of continued training each run's checkpoints are spread "
                             "over (default: %(default)g)")
    parser.add_argument("--steps", type=int, default=None,
                        help="RPG training steps (default: the cpu preset's)")
    parser.add_argument("-n", "--num-samples", type=int, default=10,
                        help="models to sample (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    parser.add_argument("--fresh", action="store_true",
                        help="delete what an earlier demo run wrote in --out (only that) and redo "
                             "every stage")
    parser.add_argument("--overwrite", action="store_true",
                        help="use an --out folder that is not empty and was not made by paramgen "
                             "(nothing that was there is deleted)")


def _stage(i: int, text: str) -> float:
    print(f"\n[{i}/4] {text}", flush=True)
    return time.time()


def summary_lines(report) -> list[str]:
    """The demo's result: first what worked (the generated models run, and how accurate they
    are next to the originals), then, plainly, whether they are more than copies."""
    metric = report.metric.replace("_", " ")
    gen, orig = report.generated_summary, report.original_summary
    n, broken = len(report.generated_scores), len(report.nonfinite)
    ran = f"all {n}" if not broken else f"{n} of {n + broken}"
    lines = [f"generated models: {ran} load and run; mean {metric} {pct(gen['mean'])}% (best "
             f"{pct(gen['best'])}%) against the training checkpoints' {pct(orig['mean'])}% "
             f"(best {pct(orig['best'])}%)", "", str(report.table()), "",
             "novelty: are they new models, or copies of the training checkpoints?",
             str(report.novelty_table()), ""]
    k = sum(report.beats_both)
    if not report.frontiers:
        verdict = "not measured (no baseline was computed)"
    elif k == 0:
        verdict = ("no generated model is more novel than noise-added or mixed copies of the "
                   "training checkpoints of the same accuracy: what the generator learned is "
                   "close to the checkpoints themselves")
    else:
        verdict = (f"{k} of {n} generated models are more novel than noise-added or mixed copies "
                   "of the training checkpoints of the same accuracy")
    lines += [f"novelty verdict: {verdict}", f"({report.beat_line()})"]
    return lines


def run(args: argparse.Namespace) -> int:
    import torch
    from safetensors.torch import load_file

    from paramgen import io
    from paramgen.collect import collect
    from paramgen.evaluate import evaluate, write_report
    from paramgen.methods import RPG

    # Every count is checked before the first stage: a bad --steps found only after minutes of
    # collecting would waste them (and leave a folder behind for a refused command).
    for option, value in (("--num-ckpts", args.num_ckpts), ("--runs", args.runs),
                          ("--steps", args.steps), ("--num-samples", args.num_samples)):
        if value is not None and value < 1:
            raise ValueError(f"{option} must be at least 1, got {value}")
    if not 0 < args.spread < float("inf"):
        raise ValueError(f"--spread must be a positive number of epochs, got {args.spread:g}")
    out = io.prepare_output_dir(args.out, overwrite=args.overwrite, fresh=args.fresh,
                                kind="demo")
    start = time.time()

    per_run = max(1, args.num_ckpts // max(1, args.runs))
    t = _stage(1, f"collect {per_run * args.runs} checkpoints of {args.arch} on {args.data}: "
                  f"{args.runs} runs x {per_run} over {args.spread:g} epochs")
    # Several runs and epochs: checkpoints of one run over one epoch are near copies of one
    # model, and a generator that reproduces them shows nothing (issue 15, Zeng et al.).
    ckpts = collect(args.arch, args.data, out / "ckpts", n=per_run, runs=args.runs,
                    spread=args.spread, seed=args.seed)
    print(f"      {len(ckpts)} checkpoints in {out / 'ckpts'} ({time.time() - t:.0f} s)")

    t = _stage(2, "train RPG (preset cpu)")
    gen_dir = out / "generator"
    if (gen_dir / "config.json").is_file():
        gen = RPG.from_pretrained(gen_dir)
        print(f"      cached: {gen_dir}")
    else:
        gen = RPG(preset="cpu").fit(ckpts, steps=args.steps, seed=args.seed,
                                    workdir=out / "train_state")
        gen.save_pretrained(gen_dir)
        io.remove_written(out, under="train_state")  # resume state, not needed once saved
    print(f"      generator in {gen_dir} ({time.time() - t:.0f} s)")

    t = _stage(3, f"sample {args.num_samples} models")
    sample_dir = out / "samples"
    files = [sample_dir / f"sample_{i:03d}.safetensors" for i in range(args.num_samples)]
    if all(f.is_file() for f in files):
        models = [load_file(str(f)) for f in files]
        print(f"      cached: {sample_dir}")
    else:
        models = gen.sample(args.num_samples, seed=args.seed, progress=True)
        for f, sd in zip(files, models):
            io.save_safetensors(f, sd)
    print(f"      {len(models)} models in {sample_dir} ({time.time() - t:.0f} s)")

    t = _stage(4, "evaluate: accuracy, novelty against the noise and mixture baselines")
    torch.manual_seed(args.seed)
    report = evaluate(models, ckpts, sample_names=[f.name for f in files], seed=args.seed)
    written = write_report(report, out / "report")
    print(f"      done ({time.time() - t:.0f} s)\n")
    for line in summary_lines(report):
        print(line)
    print(f"\nreport: {written['markdown']}")
    print(f"total: {time.time() - start:.0f} s")
    return 0
