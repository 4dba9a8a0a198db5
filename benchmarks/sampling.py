"""Fast sampling: quality against steps on several collections, and speed and memory by model size.

    python benchmarks/sampling.py quality [--collections cnn-s/digits,mlp/mnist1d,...]
        [--fit-steps 600] [--samples 10] [--ddim 1,2,5,10,20,60] [--dpm 2,3,5,10]
    python benchmarks/sampling.py speed [--sizes 1e4,1e6,1e7] [--modes sequential,partial,full]
        [--sampler dpm++] [--steps 10] [--budget 20] [--max-mb 3000]
    python benchmarks/sampling.py compare-diffusers [--collection cnn-s/digits]
    python benchmarks/sampling.py report runs/sampling/results/*/quality.json  (merge runs)

* **quality**: per collection (``arch/data`` or ``arch/data:KEYS`` for a partial generator that
  generates only KEYS, e.g. ``resnet-mini/digits:last-norm-2``), 20 checkpoints are collected
  (``paramgen.collect``; kept under ``--root`` and reused), an RPG generator is fitted once
  (``RPG(preset="cpu")``, ``--fit-steps``; saved under ``--root`` and reused), and ``--samples``
  models are drawn with every sampler setting from the same seed (same starting noise and
  permutation states: the comparison is paired). Mean test accuracy of the samples against
  DDPM-1000's; the proposal is the cheapest setting of at most 10 steps within 0.5 point of
  DDPM-1000 (or better) on every collection measured.
* **speed**: tokens per second and seconds per model when sampling one model of an MLP of each
  size (``zoo.mlp_family``, as benchmarks/memory_scaling.py) from an untrained ``cpu``-preset
  generator of its shape (speed and memory depend on shapes, not values), in each mode, each in
  a fresh process under an address-space cap. A mode that would take more than ``--budget``
  CPU-seconds stops after the block that crosses it: its seconds per model are extrapolated from
  the tokens it did (marked ``~``); sequential and partial modes repeat same-sized blocks, so the
  rate and the peak hold for the rest. Token generation only (backbone + sampler), not writing.
* **compare-diffusers**: DPM-Solver++(2M) written here against ``diffusers``'
  DPMSolverMultistepScheduler (same algorithm, given the same timesteps) with a fitted generator's
  real denoiser: largest difference of the samples, and time per call for 1 and 256 tokens.

Everything runs on one thread. Times are wall and CPU (user + sys of this process) seconds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

DEFAULT_COLLECTIONS = "cnn-s/digits,mlp/mnist1d,resnet-mini/digits:last-norm-2"
MODES = ("sequential", "partial", "full")


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (nanosecond clock, unlike os.times)."""
    return time.process_time()


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    line = lambda r: "  ".join(c.rjust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(headers), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def markdown(headers: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---:" for _ in headers) + "|"]
    return "\n".join(out + ["| " + " | ".join(r) + " |" for r in rows])


# ----------------------------------------------------------------------------- quality

def parse_collection(spec: str) -> tuple[str, str, str | None]:
    """``arch/data[:keys]`` -> (arch, data, keys)."""
    name, _, keys = spec.partition(":")
    arch, sep, data = name.partition("/")
    if not sep or not arch or not data:
        raise ValueError(f"collection {spec!r}: expected ARCH/DATA or ARCH/DATA:KEYS")
    return arch, data, keys or None


def fitted_generator(spec: str, root: Path, fit_steps: int, n_ckpts: int,
                     overrides: dict[str, Any] | None = None):
    """The collection (collected if absent) and an RPG generator fitted on it (fitted once;
    ``overrides`` are RPG settings on top of the ``cpu`` preset, part of the saved name)."""
    import paramgen as pg
    from paramgen.collect import collect
    from paramgen.methods import load_generator

    arch, data, keys = parse_collection(spec)
    folder = root / f"{arch}-{data}"
    ckpts = collect(arch, data, folder, n=n_ckpts, trainable=keys or "all", progress=False)
    overrides = dict(overrides or {})
    suffix = "".join(f"-{k}={v}" for k, v in sorted(overrides.items()))
    gen_dir = root / f"gen-{arch}-{data}-{keys or 'all'}-{fit_steps}{suffix}"
    fit = None
    if (gen_dir / "config.json").is_file():
        gen = load_generator(gen_dir)
    else:
        extra = {"keys": keys} if keys else {}
        gen = pg.RPG(preset="cpu", **extra, **overrides)
        w0, c0 = time.perf_counter(), cpu_seconds()
        gen.fit(ckpts, steps=fit_steps, seed=0, progress=False)
        fit = (time.perf_counter() - w0, cpu_seconds() - c0)
        gen.save_pretrained(gen_dir)
    return ckpts, gen, fit


def accuracies(state_dicts, info) -> list[float]:
    """Test accuracy (percent) of each state dict, with the evaluation helpers."""
    from paramgen.evaluation.core import ModelSpec, build_model, load_data_for, predictions, score

    spec = ModelSpec.from_info(info)
    x, y = load_data_for(spec)
    preds = predictions(list(state_dicts), build_model(spec), x)
    return [100 * float(a) for a in score(preds, y, spec.metric)]


def settings(ddim: list[int], dpm: list[int]) -> list[tuple[str, int | None]]:
    # DDPM-1000, the reference, costs more than all the others together: last.
    return [("ddim", s) for s in ddim] + [("dpm++", s) for s in dpm] + [("ddpm", None)]


def run_quality(args) -> None:
    import torch

    torch.set_num_threads(1)
    root = Path(args.root)
    ddim = [int(s) for s in args.ddim.split(",") if s]
    dpm = [int(s) for s in args.dpm.split(",") if s]
    specs = [s.strip() for s in args.collections.split(",") if s.strip()]
    results = []
    print(table(QUALITY_HEADERS, []).splitlines()[0], flush=True)
    for spec in specs:
        ckpts, gen, fit = fitted_generator(spec, root, args.fit_steps, args.ckpts)
        originals = accuracies(ckpts, ckpts.info)
        orig_mean = sum(originals) / len(originals)
        note = f"{spec}: {len(ckpts)} checkpoints, mean {orig_mean:.2f}"
        if fit:
            note += f"; fit {args.fit_steps} steps in {fit[0]:.0f} s wall, {fit[1]:.0f} s CPU"
        print(f"# {note}", flush=True)
        per_spec = dict(collection=spec, checkpoints_mean=orig_mean, fit=fit, rows=[])
        results.append(per_spec)
        for sampler, steps in settings(ddim, dpm):
            w0, c0 = time.perf_counter(), cpu_seconds()
            sds = gen.sample(args.samples, seed=args.seed, sampler=sampler, steps=steps)
            wall, cpu = time.perf_counter() - w0, cpu_seconds() - c0
            accs = accuracies(sds, ckpts.info)
            per_spec["rows"].append(dict(sampler=sampler, steps=steps or 1000,
                                         mean=sum(accs) / len(accs), accs=accs, wall=wall,
                                         cpu=cpu))
            print(table(QUALITY_HEADERS, quality_rows([per_spec])[-1:]).splitlines()[-1],
                  flush=True)
            # after each setting: an interrupted run keeps what it measured
            save_quality(Path(args.out), vars(args), results)
    report(args, [Path(args.out) / "quality.json"])


QUALITY_HEADERS = ["collection", "sampler", "steps", "mean acc", "min", "max", "vs DDPM-1000",
                   "wall s", "cpu s"]


def save_quality(out: Path, args: dict, results: list[dict]) -> None:
    from paramgen import io

    io.write_json(out / "quality.json", {"args": args, "results": results})


def quality_rows(results: list[dict]) -> list[list[str]]:
    rows = []
    for res in results:
        ddpm = next((r["mean"] for r in res["rows"] if r["sampler"] == "ddpm"), None)
        for r in res["rows"]:
            delta = "-" if ddpm is None else f"{r['mean'] - ddpm:+.2f}"
            rows.append([res["collection"], r["sampler"], str(r["steps"]), f"{r['mean']:.2f}",
                         f"{min(r['accs']):.2f}", f"{max(r['accs']):.2f}", delta,
                         f"{r['wall']:.1f}", f"{r['cpu']:.1f}"])
    return rows


def report(args, files: list[Path]) -> None:
    """One table and the proposal over the collections of one or more quality.json files (runs
    split over processes are merged here)."""
    import json

    from paramgen import io

    results = [res for f in files for res in json.loads(Path(f).read_text())["results"]]
    notes = [f"{res['collection']}: checkpoints mean {res['checkpoints_mean']:.2f}"
             + (f"; fit in {res['fit'][0]:.0f} s wall, {res['fit'][1]:.0f} s CPU"
                if res.get("fit") else "") for res in results]
    rows = quality_rows(results)
    proposal = propose(results, args.max_default_steps, args.tolerance)
    print("\n".join(notes) + "\n\n" + table(QUALITY_HEADERS, rows) + "\n\n" + proposal)
    out = Path(args.out)
    io.write_text(out / "quality.md", "\n".join(f"- {n}" for n in notes) + "\n\n"
                  + markdown(QUALITY_HEADERS, rows) + "\n\n" + proposal + "\n")
    print(f"wrote {out / 'quality.md'}")


def propose(results: list[dict], max_steps: int, tolerance: float) -> str:
    """The cheapest setting of at most ``max_steps`` steps within ``tolerance`` points of (or
    above) DDPM-1000 on every collection, and the same setting's worst margin."""
    candidates: dict[tuple[str, int], float] = {}
    missing = [res["collection"] for res in results
               if not any(r["sampler"] == "ddpm" for r in res["rows"])]
    if missing:
        return f"no proposal: DDPM-1000 not measured on {', '.join(missing)}"
    for res in results:
        ddpm = next(r["mean"] for r in res["rows"] if r["sampler"] == "ddpm")
        for r in res["rows"]:
            if r["sampler"] != "ddpm" and r["steps"] <= max_steps:
                key = (r["sampler"], r["steps"])
                candidates[key] = min(candidates.get(key, math.inf), r["mean"] - ddpm)
    passing = sorted((steps, sampler) for (sampler, steps), worst in candidates.items()
                     if worst >= -tolerance)
    lines = ["worst margin vs DDPM-1000 over the collections (points): " + ", ".join(
        f"{s}-{n} {m:+.2f}" for (s, n), m in sorted(candidates.items()))]
    if not passing:
        lines.append(f"no setting of <= {max_steps} steps is within {tolerance} point of "
                     "DDPM-1000 on every collection")
    else:
        steps, sampler = passing[0]
        lines.append(f"within {tolerance} point of DDPM-1000 on every collection: " + ", ".join(
            f"{s}-{n}" for n, s in passing))
        lines.append(f"cheapest: sampler={sampler!r}, sampling_steps={steps}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- speed

def speed_child(job: dict[str, Any]) -> dict[str, Any]:
    """One (size, mode) measurement in this fresh process."""
    import torch

    torch.set_num_threads(1)
    import paramgen.methods  # noqa: F401  (imports belong to the baseline)
    from memory_scaling import (_checkpoints, _is_oom, _untrained, limit_address_space,
                                peak_mb, reset_peak, rss_mb)
    from paramgen.methods import RPG

    result: dict[str, Any] = {}
    try:
        ckpts = _checkpoints(job["params"], 2, 0)
        gen = RPG(preset=job["preset"])
        _untrained(gen, ckpts)
        del ckpts
        limit_address_space(job["max_mb"])
        tokens_per_model = gen.tokenizer.num_tokens
        exact = reset_peak()
        before = rss_mb()
        blocks = gen._token_blocks(1, None, 0, job["mode"], job["sampler"], job["steps"], None,
                                   False)
        done = 0
        w0, c0 = time.perf_counter(), cpu_seconds()
        with torch.no_grad():          # as in sample(): no graph kept along the sequence
            for _, _, x in blocks:
                done += x.shape[1]
                if cpu_seconds() - c0 > job["budget"]:
                    break
        wall, cpu = time.perf_counter() - w0, cpu_seconds() - c0
        result.update(tokens=done, tokens_per_model=tokens_per_model, wall=wall, cpu=cpu,
                      peak_mb=peak_mb() - before, exact_peak=exact,
                      token_size=gen.tokenizer.token_size)
    except BaseException as exc:  # noqa: BLE001  (every failure is reported, never hidden)
        result["error"] = "oom" if _is_oom(exc) else type(exc).__name__
        result["message"] = str(exc).splitlines()[0][:300] if str(exc) else repr(exc)
    return result


def spawn(job: dict[str, Any], timeout: float) -> dict[str, Any]:
    from memory_scaling import spawn as spawn_child

    return spawn_child(job, timeout, script=__file__, child_flag="speed-child")


def run_speed(args) -> None:
    from memory_scaling import _params_of
    from paramgen.diffusion import sampling_plan
    from paramgen.methods.rpg import RPGConfig

    sampler, steps = sampling_plan(RPGConfig.from_preset(args.preset), args.sampler, args.steps)
    headers = ["params", "mode", "tokens/model", "tokens done", "tokens/s (wall)",
               "tokens/s (cpu)", "s/model (wall)", "s/model (cpu)", "peak MB"]
    rows, results = [], []
    print(f"RPG preset {args.preset!r} (untrained), sampler {sampler} {steps} steps, one thread, "
          f"budget {args.budget:.0f} CPU-s per measurement, cap {args.max_mb:.0f} MB\n")
    print(table(headers, []).splitlines()[0], flush=True)
    for target in [int(float(s)) for s in args.sizes.split(",") if s]:
        params = _params_of(target)
        for mode in [m for m in args.modes.split(",") if m]:
            job = dict(params=target, mode=mode, preset=args.preset, sampler=sampler,
                       steps=steps, budget=args.budget, max_mb=args.max_mb)
            res = spawn(job, args.timeout)
            results.append(dict(job, params=params, result=res))
            if "error" in res:
                row = [f"{params:,}", mode] + [res["error"]] + ["-"] * 6
            else:
                done, total = res["tokens"], res["tokens_per_model"]
                mark = "" if done >= total else "~"
                row = [f"{params:,}", mode, f"{total:,}", f"{done:,}",
                       f"{done / res['wall']:.1f}", f"{done / res['cpu']:.1f}",
                       f"{mark}{res['wall'] * total / done:.2f}",
                       f"{mark}{res['cpu'] * total / done:.2f}", f"{res['peak_mb']:.1f}"]
            rows.append(row)
            print(table(headers, [row]).splitlines()[-1], flush=True)
    print("\n" + table(headers, rows))
    out = Path(args.out)
    from paramgen import io

    io.write_json(out / "speed.json", {"args": vars(args), "sampler": sampler, "steps": steps,
                                       "results": results})
    io.write_text(out / "speed.md", markdown(headers, rows) + "\n")
    print(f"wrote {out / 'speed.md'}")


# ----------------------------------------------------------------------------- diffusers

def torch_no_grad(fn):
    """``torch.no_grad()`` as a decorator, importing torch only when called (as ``sample``)."""
    def wrapped(*args, **kwargs):
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)
    return wrapped


@torch_no_grad
def diffusers_dpm(model_fn, noise, schedule, steps: int, prediction: str):
    """The same sampler through diffusers' DPMSolverMultistepScheduler (a fresh one per call:
    it keeps per-call state)."""
    from diffusers import DPMSolverMultistepScheduler

    from paramgen.diffusion.samplers import solver_timesteps

    sch = DPMSolverMultistepScheduler(
        num_train_timesteps=schedule.num_steps, beta_start=schedule.beta_start,
        beta_end=schedule.beta_end, beta_schedule="linear", algorithm_type="dpmsolver++",
        solver_order=2, prediction_type=prediction, final_sigmas_type="zero",
        lower_order_final=True)
    sch.set_timesteps(timesteps=solver_timesteps(schedule, steps))
    x = noise
    for t in sch.timesteps:
        x = sch.step(model_fn(x, t.expand(x.shape[0])), t, x).prev_sample
    return x


def run_compare(args) -> None:
    import torch

    torch.set_num_threads(1)
    from paramgen.diffusion import sample

    c0 = time.perf_counter()
    import diffusers  # noqa: F401

    import_s = time.perf_counter() - c0
    _, gen, _ = fitted_generator(args.collection, Path(args.root), args.fit_steps, args.ckpts)
    net, schedule, pred = gen.network.eval(), gen.schedule, gen.config.prediction
    protos = gen.prototypes(1, seed=0)[0]                      # [L, T]
    headers = ["tokens/call", "steps", "max |diff|", "max |x|", "ours ms/call",
               "diffusers ms/call"]
    rows = []
    for k in (1, 256):
        p = protos[torch.arange(k) % protos.shape[0]]
        model_fn = lambda xt, t: net.denoise(xt, t, p)  # noqa: E731
        noise = torch.randn(p.shape, generator=torch.Generator().manual_seed(0))
        for steps in (2, 5, 10):
            ours = sample(model_fn, noise, schedule, "dpm++", steps, pred)
            theirs = diffusers_dpm(model_fn, noise, schedule, steps, pred)
            reps = args.reps if k == 1 else max(1, args.reps // 10)
            times = []
            for fn in (lambda: sample(model_fn, noise, schedule, "dpm++", steps, pred),
                       lambda: diffusers_dpm(model_fn, noise, schedule, steps, pred)):
                t0 = time.process_time()
                for _ in range(reps):
                    fn()
                times.append(1000 * (time.process_time() - t0) / reps)
            rows.append([str(k), str(steps), f"{float((ours - theirs).abs().max()):.2e}",
                         f"{float(ours.abs().max()):.3f}", f"{times[0]:.2f}", f"{times[1]:.2f}"])
            print(table(headers, [rows[-1]]).splitlines()[-1], flush=True)
    print(f"\n{args.collection} generator ({pred} prediction); times are CPU ms per sampler "
          f"call, {args.reps} (1 token) / {max(1, args.reps // 10)} (256 tokens) calls; "
          f"`import diffusers` took {import_s:.2f} s wall\n")
    print(table(headers, rows))


# ----------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    q = sub.add_parser("quality", help="accuracy of samples against sampler and steps")
    r = sub.add_parser("report", help="merge quality.json files: one table and the proposal")
    r.add_argument("files", nargs="+")
    q.add_argument("--collections", default=DEFAULT_COLLECTIONS)
    q.add_argument("--fit-steps", type=int, default=600)
    q.add_argument("--samples", type=int, default=10)
    q.add_argument("--ddim", default="1,2,5,10,20,60")
    q.add_argument("--dpm", default="2,3,5,10")
    for p in (q, r):
        p.add_argument("--max-default-steps", type=int, default=10)
        p.add_argument("--tolerance", type=float, default=0.5)
    s = sub.add_parser("speed", help="tokens/s, s/model and peak memory by size and mode")
    s.add_argument("--sizes", default="1e4,1e6,1e7")
    s.add_argument("--modes", default=",".join(MODES))
    s.add_argument("--preset", default="cpu")
    s.add_argument("--sampler", default=None, help="default: the preset's")
    s.add_argument("--steps", type=int, default=None, help="default: the preset's")
    s.add_argument("--budget", type=float, default=20, help="CPU seconds per measurement")
    s.add_argument("--max-mb", type=float, default=3000)
    s.add_argument("--timeout", type=float, default=600)
    c = sub.add_parser("compare-diffusers", help="our DPM-Solver++(2M) against diffusers'")
    c.add_argument("--collection", default="cnn-s/digits")
    c.add_argument("--fit-steps", type=int, default=600)
    c.add_argument("--reps", type=int, default=50)
    for p in (q, c):
        p.add_argument("--ckpts", type=int, default=20, help="checkpoints per collection")
        p.add_argument("--seed", type=int, default=0)
    for p in (q, s, c, r):
        p.add_argument("--root", default="runs/sampling", help="collections and generators")
        p.add_argument("--out", default="runs/sampling/results")
    child = sub.add_parser("speed-child", help=argparse.SUPPRESS)
    child.add_argument("job")
    args = ap.parse_args(argv)
    if args.what == "speed-child":
        print(json.dumps(speed_child(json.loads(args.job))), flush=True)
    elif args.what == "quality":
        run_quality(args)
    elif args.what == "report":
        report(args, [Path(f) for f in args.files])
    elif args.what == "speed":
        run_speed(args)
    else:
        run_compare(args)


if __name__ == "__main__":
    main()
