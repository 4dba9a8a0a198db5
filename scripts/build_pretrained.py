"""Build a generator that ships with paramgen, from the project's own code, in one command:

    OMP_NUM_THREADS=1 python scripts/build_pretrained.py digits-tasks
    OMP_NUM_THREADS=1 python scripts/build_pretrained.py digits-lora

Runs the documented command-line steps through `python -m paramgen` (seeded, one thread each),
in a work folder (default build/pretrained/NAME):

  digits-tasks: paramgen collect --tasks all --data digits     (1,022 tasks x 3 MLPs)
                paramgen train --condition-from manifest --holdout 0.1   (RPG cpu-tasks)
  digits-lora:  paramgen collect --lora r=4,targets=q,v --tasks 300 --data digits
                paramgen train --condition-from manifest --holdout 0.1 (cpu-tasks, 1,000 steps,
                token_size=128, diffusion_batch=128: the settings of docs/adapters.md)

then measures the trained generator (balanced accuracy on the relabelled digits test split of
the models or adapters it generates, for seen and unseen tasks, next to the directly trained
ones) and copies it into src/paramgen/pretrained/NAME/: config.json + model.safetensors (a
generator folder like any other), split.json, quality.json (the numbers, the commands, the date,
file sizes and sha256) and, for digits-lora, base/ (the frozen base the adapters load onto).

Interrupted? Run the same command again: collection and training resume (paramgen's own resume),
a finished training is not repeated. `--steps` changes the generator's training steps (recorded).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src"
sys.path.insert(0, str(SRC))  # this checkout's paramgen, as the subprocesses below use

BUILDS = {
    "digits-tasks": {
        "collect": ["collect", "--tasks", "all", "--data", "digits", "--seed", "0"],
        "train": ["train", "--condition-from", "manifest", "--holdout", "0.1", "--split-seed",
                  "0", "--seed", "0"],
        "steps": 4000, "adapters": False, "samples": 5, "seen_measured": 102,
    },
    "digits-lora": {
        "collect": ["collect", "--lora", "r=4,targets=q,v", "--tasks", "300", "--data", "digits",
                    "--seed", "0"],
        "train": ["train", "--condition-from", "manifest", "--holdout", "0.1", "--split-seed",
                  "0", "--seed", "0", "--set", "token_size=128", "--set", "diffusion_batch=128"],
        "steps": 1000, "adapters": True, "samples": 3, "seen_measured": 30,
    },
}
PROMPT = "a model that spots even digits"
SHIPPED_FILES = ("config.json", "model.safetensors", "split.json")


def run_paramgen(args: list[str], log: Path, cwd: Path) -> float:
    """`python -m paramgen ARGS --threads 1` in ``cwd`` with its output appended to ``log``;
    returns the seconds it took, raises on a non-zero exit (naming the log)."""
    cmd = [sys.executable, "-m", "paramgen", *args, "--threads", "1"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])]), "OMP_NUM_THREADS": "1"}
    print("$ paramgen " + " ".join(args + ["--threads", "1"]), flush=True)
    t0 = time.time()
    with open(log, "a", encoding="utf-8") as out:
        rc = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise SystemExit(f"paramgen {args[0]} failed (exit {rc}); see {log}")
    return time.time() - t0


def _direct_scores(grid) -> dict[str, list[float]]:
    """Each task's directly trained checkpoints' balanced accuracy, from the collection."""
    scores: dict[str, list[float]] = {}
    for i in range(len(grid)):
        task = grid.provenance(i).get("task") or "".join(
            str(int(v)) for v in grid.condition(i).tolist())
        scores.setdefault(str(task), []).append(float(grid.metrics(i)["balanced_accuracy"]))
    return scores


def _model_scorer(gen, info: dict):
    """bits, n, seed -> balanced accuracies of n generated models on the digits test split."""
    from paramgen.data import load, relabel
    from paramgen.evaluation.core import build_model, load_into
    from paramgen.metrics import balanced_accuracy, predict

    _, _, x, y = load(info["data"])
    model = build_model(info)

    def score(bits: str, n: int, seed: int) -> list[float]:
        yb = relabel(y, bits)
        return [balanced_accuracy(predict(load_into(model, sd), x), yb)
                for sd in gen.sample(n, condition=bits, seed=seed)]
    return score


def _adapter_scorer(gen, info: dict, base_dir: Path, tmp: Path):
    """bits, n, seed -> balanced accuracies of n generated adapters, loaded through peft."""
    from paramgen.adapters.evaluate import score_adapter
    from paramgen.adapters.export import sample_to_peft

    def score(bits: str, n: int, seed: int) -> list[float]:
        dirs = [tmp / f"{bits}_{seed}_{k}" for k in range(n)]
        folders = sample_to_peft(gen, dirs, condition=bits, seed=seed)
        return [score_adapter(base_dir, f, bits, info["data"]) for f in folders]
    return score


def _summarize(rows: list[tuple[str, float, float]]) -> dict:
    """rows of (task, direct mean, generated mean) -> the numbers quality.json keeps."""
    direct = [r[1] for r in rows]
    generated = [r[2] for r in rows]
    return {"tasks": len(rows), "direct_mean": statistics.mean(direct),
            "generated_mean": statistics.mean(generated),
            "gap": statistics.mean(direct) - statistics.mean(generated),
            "generated_worst": min(generated), "direct_worst": min(direct),
            "per_task": {t: {"direct": d, "generated": g} for t, d, g in rows}}


def measure(name: str, work: Path, spec: dict) -> dict:
    """Seen and unseen tasks' balanced accuracy, generated (mean of ``samples`` per task) vs
    directly trained (mean of the task's checkpoints), and the README prompt's model."""
    import torch

    from paramgen import prompts
    from paramgen.checkpoints import CheckpointSet
    from paramgen.methods import load_generator

    grid = CheckpointSet.load(work / "grid")
    gen = load_generator(work / "gen")
    info = gen.collection_info
    split = json.loads((work / "gen" / "split.json").read_text())
    direct = _direct_scores(grid)
    picks = torch.randperm(len(split["seen"]), generator=torch.Generator().manual_seed(0))
    seen = sorted(split["seen"][i] for i in picks[:spec["seen_measured"]].tolist())
    with tempfile.TemporaryDirectory() as tmp:
        if spec["adapters"]:
            score = _adapter_scorer(gen, info, work / "grid" / "base", Path(tmp))
        else:
            score = _model_scorer(gen, info)
        result = {"samples_per_task": spec["samples"], "seed": 0,
                  "sampler": f"{gen.config.sampler} {gen.config.sampling_steps}",
                  "metric": "balanced accuracy on the relabelled digits test split"}
        t0 = time.time()
        for part, tasks in (("seen", seen), ("unseen", split["unseen"])):
            rows = [(t, statistics.mean(direct[t]), statistics.mean(score(t, spec["samples"], 0)))
                    for t in tasks]
            result[part] = _summarize(rows)
            print(f"{part}: {len(rows)} tasks, generated {100 * result[part]['generated_mean']:.1f}"
                  f"% vs directly trained {100 * result[part]['direct_mean']:.1f}% (worst task "
                  f"generated {100 * result[part]['generated_worst']:.1f}%)", flush=True)
        result["measure_seconds"] = round(time.time() - t0, 1)
        bits = prompts.read_prompt(PROMPT, prompts.class_names(info["data"]),
                                   backend="rules").bits
        t0 = time.time()
        first = score(bits, 1, 0)[0]
        result["prompt"] = {"prompt": PROMPT, "bits": bits, "balanced_accuracy": first,
                            "seen": bits in set(split["seen"]),
                            "generate_and_score_seconds": round(time.time() - t0, 2)}
    print(f"prompt {PROMPT!r} -> {bits}: {100 * first:.1f}%", flush=True)
    return result


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ship(name: str, work: Path, spec: dict, quality: dict) -> Path:
    """Copy the generator (and the base, for adapters) into the package, with quality.json."""
    from paramgen import io, prompts

    dest = SRC / "paramgen" / "pretrained" / name
    if dest.exists():
        shutil.rmtree(dest)  # only ever this build's own folder under pretrained/
    dest.mkdir(parents=True)
    for f in SHIPPED_FILES:
        shutil.copyfile(work / "gen" / f, dest / f)
    config = json.loads((dest / "config.json").read_text())
    info = config["collection_info"]
    # What a caller needs to build the model: the class names the task bits refer to.
    info["class_names"] = prompts.class_names(info["data"])
    if spec["adapters"]:
        shutil.copytree(work / "grid" / "base", dest / "base")
        info["base_dir"] = "base"  # resolved against the generator folder when loaded
    io.write_json(dest / "config.json", config)
    files = sorted(p for p in dest.rglob("*") if p.is_file())
    quality["files"] = {str(p.relative_to(dest)): {"bytes": p.stat().st_size,
                                                   "sha256": _sha256(p)} for p in files}
    quality["total_bytes"] = sum(v["bytes"] for v in quality["files"].values())
    io.write_json(dest / "quality.json", quality)
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", choices=sorted(BUILDS))
    ap.add_argument("--work", default=None,
                    help="work folder (default: build/pretrained/NAME in the repository)")
    ap.add_argument("--steps", type=int, default=None,
                    help="generator training steps (default: digits-tasks 4000, digits-lora "
                         "1000)")
    args = ap.parse_args()
    spec = BUILDS[args.name]
    steps = args.steps or spec["steps"]
    work = Path(args.work) if args.work else REPO / "build" / "pretrained" / args.name
    work.mkdir(parents=True, exist_ok=True)
    collect = spec["collect"] + ["--out", "grid", "--no-progress"]
    train = ["train", "--ckpts", "grid", *spec["train"][1:], "--steps", str(steps),
             "--out", "gen", "--quiet"]
    took = run_paramgen(collect, work / "collect.log", work)
    # A rerun resumes a finished collection in seconds: keep the time of the run that did the
    # work (collect prints "time: N s" each run; the first one in the log collected).
    done = re.findall(r"^time: ([0-9.]+) s", (work / "collect.log").read_text(errors="replace"),
                      flags=re.M)
    timings = {"collect_seconds": float(done[0]) if done else round(took, 1)}
    if (work / "gen" / "config.json").is_file() and (work / "gen" / "split.json").is_file():
        print(f"training done earlier: {work / 'gen'}")
        took = re.findall(r"trained \S+ .* in (\d+) s -> ", (work / "train.log").read_text(
            errors="replace"), flags=re.M) if (work / "train.log").is_file() else []
        if took:  # the earlier run's own report of its training time
            timings["train_seconds"] = float(took[-1])
    else:
        timings["train_seconds"] = round(run_paramgen(train, work / "train.log", work), 1)
    quality = {"name": args.name,
               "command": " ".join(["OMP_NUM_THREADS=1 python scripts/build_pretrained.py",
                                    args.name] + ([f"--steps {args.steps}"] if args.steps
                                                  else [])),
               "steps": ["paramgen " + " ".join(c + ["--threads", "1"]) for c in (collect, train)],
               "train_steps": steps,
               "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "python": platform.python_version(), **timings}
    import torch  # after the subprocesses: the parent process needs it only for measuring

    torch.set_num_threads(1)
    quality["torch"] = torch.__version__
    quality.update(measure(args.name, work, spec))
    dest = ship(args.name, work, spec, quality)
    print(f"shipped {args.name}: {dest} ({quality['total_bytes'] / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
