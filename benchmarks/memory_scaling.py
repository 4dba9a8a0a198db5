"""Peak memory of one training step and of sampling one model, RPG vs p-diff, 2K to 10M parameters.

    python benchmarks/memory_scaling.py [--out runs/memory_scaling] [--max-mb 6000]
        [--sizes 2e3,1e4,1e5,1e6,1e7] [--methods rpg,pdiff] [--modes sequential,partial,full]

The models are two-hidden-layer MLPs (``zoo.mlp_family``, input 64, 10 classes) sized to each
target; the training data are a few (``--ckpts``, default 4) random checkpoints of that shape:
this measures memory, not quality, so values do not matter, only shapes.

Every measurement runs in a fresh child process (so one measurement's allocations never inflate
the next), under an address-space limit of ``--max-mb`` above what the child has mapped just
before the measured phase (``resource.setrlimit(RLIMIT_AS)``; the training data are already in
memory then): an allocation past it fails inside the child and is reported as OOM instead of
taking the machine down.

* **train step**: ``fit`` with the fewest steps each method has, on the checkpoints already in
  memory: RPG 1 step (preset ``--rpg-preset``, default tiny: token 256), p-diff 2 steps (one
  autoencoder step, then encoding, then one DDPM step; preset ``--pdiff-preset``, default paper).
  Peak = highest RSS during ``fit`` minus RSS just before it: tokenized copies of the data (for
  windowed training past 64 MB of tokens RPG writes them to a temporary file in the system's
  temporary folder and reads windows back: the page cache is not counted), the generator, its
  optimizer state and the step's activations.
* **sample**: a fresh process loads the generator (``from_pretrained``) and samples one model
  into a ``.safetensors`` file (``sample_to_files``, what ``paramgen sample`` does; RPG streams
  the values to the file as they are generated, p-diff decodes the whole vector first).
  Peak = highest RSS during load + sample minus RSS after the imports (generator weights
  included, like ``torch.cuda.max_memory_allocated`` counts them; the ~0.3 GB of the Python
  interpreter and torch libraries is not). RPG is measured in each sampling mode; p-diff has
  one. The samplers run ``--sample-steps`` DDIM steps (default 1): a sampler step reuses
  buffers of the same size, so memory does not depend on the number of steps and time is linear
  in it. When a method cannot train a size, its sampling is measured on an untrained generator
  of the same shape (memory does not depend on the weights' values).

On CUDA (``--device cuda``) the peaks are ``torch.cuda.max_memory_allocated`` instead, and
``--max-mb`` becomes a per-process memory fraction.

Writes ``results.json``, ``memory_scaling.md`` (table + the acceptance checks) and
``memory_scaling.png`` (peak memory vs parameters, log-log) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

# ----------------------------------------------------------------------------- memory probes

_STATUS = "/proc/self/status"


def _status_kb(field: str) -> int | None:
    """A ``Vm*`` field of /proc/self/status in KiB (Linux), or None where there is none."""
    try:
        with open(_STATUS) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_mb() -> float:
    """Current resident set size in MiB."""
    kb = _status_kb("VmRSS")
    if kb is None:  # no /proc: the high-water mark is the best this platform offers
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024


def reset_peak() -> bool:
    """Reset the kernel's RSS high-water mark (Linux >= 4.0), so the next peak is the phase's own.

    Without it the peak could be an earlier phase's (imports, building the data); the deltas are
    then upper bounds, which the results say.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_mb() -> float:
    """Highest RSS since the last reset (or since the process started), in MiB."""
    kb = _status_kb("VmHWM")
    if kb is None:
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024


def limit_address_space(max_mb: float) -> None:
    """Let the process map at most ``max_mb`` MiB more than it has mapped now."""
    now_kb = _status_kb("VmSize") or 0
    cap = int((now_kb / 1024 + max_mb) * 2**20)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def _is_oom(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or any(
        s in text for s in ("out of memory", "not enough memory", "can't allocate",
                            "cannot allocate", "failed to allocate", "std::bad_alloc"))


# ----------------------------------------------------------------------------- child process

def _checkpoints(target: int, n: int, seed: int) -> list[dict]:
    """``n`` random checkpoints of the MLP closest to ``target`` parameters."""
    import torch

    from paramgen.zoo import mlp_family

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        base = mlp_family(target, (64,), 10, depth=2).state_dict()
        return [{k: v + 0.01 * torch.randn_like(v) for k, v in base.items()} for _ in range(n)]


def _generator(method: str, preset: str, device: str, overrides: dict | None = None):
    from paramgen.methods import PDiff, RPG

    cls = RPG if method == "rpg" else PDiff
    return cls(preset=preset, device=device, **(overrides or {}))


def _untrained(gen, ckpts) -> None:
    """Give ``gen`` the network it would have after ``fit`` on ``ckpts``, without training it.

    Only for measuring sampling where training does not fit in memory: sampling's memory depends
    on the shapes (tokenizer layout, network sizes), not on the weights' values.
    """
    from paramgen.methods.pdiff import resolve_keys
    from paramgen.tokenize import Tokenizer, is_generated

    if gen.method == "rpg":
        tok = Tokenizer.fit(ckpts, gen.config.token_size, gen.config.tokenization)
        gen._state_kind = "checkpoint"
        gen._state_runs = [0] * len(ckpts)
        gen._build(tok, len(ckpts), None)
    else:
        first = ckpts[0]
        keys = resolve_keys(first, gen.config.keys)
        values = sum(first[k].numel() for k in keys if is_generated(first[k]))
        tok = Tokenizer.fit(({k: sd[k] for k in keys} for sd in ckpts), values, "flat")
        gen.generated_keys, gen.key_order = keys, list(first)
        gen.reference = {k: v for k, v in first.items() if k not in keys}
        gen._build(tok)
    gen.network.eval()


def _values_in(path: Path) -> int:
    """How many values a .safetensors file holds, read from its header alone."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())


def run_child(job: dict[str, Any]) -> dict[str, Any]:
    """One measurement, in this (fresh) process. Returns numbers or the reason there are none."""
    import torch

    torch.set_num_threads(job["threads"])
    import paramgen.methods  # noqa: F401  (import cost and RSS belong to the baseline)

    cuda = job["device"] == "cuda"

    def cap() -> None:
        # Set just before the measured phase: the cap bounds the generator's own allocations,
        # not the training data already in memory.
        if cuda:
            total = torch.cuda.get_device_properties(0).total_memory
            torch.cuda.set_per_process_memory_fraction(min(job["max_mb"] * 2**20 / total, 1.0))
        else:
            limit_address_space(job["max_mb"])

    result: dict[str, Any] = {"base_rss_mb": rss_mb()}
    try:
        if job["kind"] in ("train", "prepare"):
            ckpts = _checkpoints(job["params"], job["ckpts"], job["seed"])
            cap()
            gen = _generator(job["method"], job["preset"], job["device"],
                             job.get("rpg_set") if job["method"] == "rpg" else None)
            steps = 1 if job["method"] == "rpg" else 2
            if job["kind"] == "train":
                exact = reset_peak()
                if cuda:
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                before = rss_mb()
                t0 = time.perf_counter()
                gen.fit(ckpts, steps=steps, seed=0, progress=False)
                if cuda:
                    torch.cuda.synchronize()
                    result["peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
                else:
                    result["peak_mb"] = peak_mb() - before
                result.update(seconds=time.perf_counter() - t0, exact_peak=exact,
                              abs_peak_mb=peak_mb())
            else:
                _untrained(gen, ckpts)
            del ckpts
            gen.save_pretrained(job["save"])
        else:
            from paramgen.methods import load_generator

            cap()
            exact = reset_peak()
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            before = result["base_rss_mb"]
            t0 = time.perf_counter()
            gen = load_generator(job["save"])
            t1 = time.perf_counter()
            opts = dict(seed=0, sampler="ddim", steps=job["sample_steps"])
            if job["method"] == "rpg":
                opts["mode"] = job["mode"]
            # What `paramgen sample` does: the model goes to a .safetensors file. RPG streams the
            # values there as they are generated; p-diff decodes the whole vector first.
            target = Path(job["save"]) / f"sample_{job.get('mode', '-')}.safetensors"
            gen.sample_to_files([target], **opts)
            if cuda:
                torch.cuda.synchronize()
                result["peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
            else:
                result["peak_mb"] = peak_mb() - before
            result.update(seconds=time.perf_counter() - t1, load_seconds=t1 - t0,
                          exact_peak=exact, abs_peak_mb=peak_mb(),
                          sampled_values=_values_in(target))
            target.unlink()
    except BaseException as exc:  # noqa: BLE001  (report every failure, never crash silently)
        result["error"] = "oom" if _is_oom(exc) else type(exc).__name__
        result["message"] = str(exc).splitlines()[0][:300] if str(exc) else repr(exc)
        if result["error"] != "oom":
            result["traceback"] = traceback.format_exc()[-2000:]
    return result


def spawn(job: dict[str, Any], timeout: float, script: str = __file__,
          child_flag: str = "--child") -> dict[str, Any]:
    """Run one job in a fresh interpreter (``script child_flag JOB``) and read its JSON answer
    from the last stdout line."""
    cmd = [sys.executable, os.path.abspath(script), child_flag, json.dumps(job)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": "timeout", "message": f"no answer within {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        # Killed from outside (e.g. the kernel's OOM killer: -9) or crashed before answering.
        why = "killed" if proc.returncode < 0 else "crashed"
        tail = (proc.stderr or "").strip().splitlines()[-1:] or [""]
        return {"error": why, "message": f"exit status {proc.returncode}: {tail[0][:300]}"}
    return json.loads(lines[-1])


# ----------------------------------------------------------------------------- report

def _cell(res: dict[str, Any] | None, max_mb: float, key: str = "peak_mb") -> str:
    if res is None:
        return "-"
    if "error" in res:
        return {"oom": f"OOM (> {max_mb:.0f} MB)", "timeout": "timeout"}.get(
            res["error"], res["error"])
    return f"{res[key]:.1f}"


def _secs(res: dict[str, Any] | None) -> str:
    return "-" if not res or "error" in res else f"{res['seconds']:.2f}"


def rows_of(results: list[dict[str, Any]], max_mb: float) -> list[list[str]]:
    rows = []
    for r in results:
        rows.append([f"{r['params']:,}", r["method"], r["mode"], _cell(r["train"], max_mb),
                     _cell(r["sample"], max_mb), _secs(r["train"]), _secs(r["sample"])])
    return rows


HEADERS = ["params", "method", "mode", "train-step peak MB", "sample peak MB", "train s",
           "sample s"]


# Wide enough for "10,003,135" and "OOM (> 6000 MB)", so rows printed one at a time line up.
_MIN_WIDTHS = [10, 6, 10, 18, 15, 7, 8]


def text_table(rows: list[list[str]]) -> str:
    widths = [max(len(h), m, *(len(r[i]) for r in rows))
              for i, (h, m) in enumerate(zip(HEADERS, _MIN_WIDTHS))]
    fmt = lambda r: "  ".join(c.rjust(w) if i in (0, 3, 4, 5, 6) else c.ljust(w)  # noqa: E731
                              for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(HEADERS), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows])


def markdown_table(rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(HEADERS) + " |", "|" + "|".join(["---:", ":---", ":---"]
                                                             + ["---:"] * 4) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _value(results, method, mode, params, phase):
    for r in results:
        if r["method"] == method and r["mode"] == mode and r["params"] == params:
            res = r[phase]
            return None if not res or "error" in res else res["peak_mb"]
    return None


def acceptance(results: list[dict[str, Any]]) -> list[str]:
    """The issues' checks, computed from the measurements (or why they cannot be)."""
    lines = []
    sizes = sorted({r["params"] for r in results})
    small = min(sizes, key=lambda p: abs(math.log(p / 1e4)))
    large = min(sizes, key=lambda p: abs(math.log(p / 1e7)))
    # "~10K" and "~10M" mean within a factor of 3; other sizes do not answer the question.
    near = abs(math.log10(small / 1e4)) < 0.5 and abs(math.log10(large / 1e7)) < 0.5
    modes = sorted({r["mode"] for r in results if r["method"] == "rpg"})
    # RPG's cost bounded in model size: each phase's peak at ~10M against its peak at ~10K.
    for phase, mode, what in ([("train", modes[0], "training step")] if modes else []) + [
            ("sample", m, f"{m} sampling") for m in modes]:
        a, b = _value(results, "rpg", mode, small, phase), _value(results, "rpg", mode, large,
                                                                   phase)
        if near and a is not None and b is not None:
            ratio = b / max(a, 1e-9)
            lines.append(f"RPG {what}: {b:.1f} MB at {large:,} params vs {a:.1f} MB at "
                         f"{small:,} = {ratio:.2f}x (bar: <= 1.5x) -> "
                         f"{'PASS' if ratio <= 1.5 else 'FAIL'}")
        else:
            lines.append(f"RPG {what}: not measured at both ~10K and ~10M")
    for phase, rpg_mode, what in (("train", "sequential", "train step"),
                                  ("sample", "sequential", "sampling (RPG sequential)")):
        ran = [p for p in sizes if _value(results, "pdiff", "-", p, phase) is not None]
        if not ran:
            lines.append(f"p-diff {what}: ran at no size")
            continue
        p = max(ran)
        pd, rp = _value(results, "pdiff", "-", p, phase), _value(results, "rpg", rpg_mode, p,
                                                                 phase)
        if rp is None:
            lines.append(f"p-diff {what}: RPG not measured at {p:,}")
            continue
        ratio = pd / max(rp, 1e-9)
        lines.append(f"{what} at the largest size p-diff runs ({p:,} params): p-diff {pd:.1f} "
                     f"MB, RPG {rp:.1f} MB = {ratio:.1f}x lower (bar: >= 10x) -> "
                     f"{'PASS' if ratio >= 10 else 'FAIL'}")
    return lines


def plot(results: list[dict[str, Any]], path: Path, max_mb: float) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    series = [("rpg", "sequential", "train", "RPG train step", "tab:blue", "-", "o"),
              ("rpg", "sequential", "sample", "RPG sample, sequential", "tab:blue", "--", "s"),
              ("rpg", "partial", "sample", "RPG sample, partial", "tab:cyan", "--", "^"),
              ("rpg", "full", "sample", "RPG sample, full", "tab:purple", "--", "v"),
              ("pdiff", "-", "train", "p-diff train step", "tab:red", "-", "o"),
              ("pdiff", "-", "sample", "p-diff sample", "tab:orange", "--", "s")]
    for method, mode, phase, label, color, ls, marker in series:
        pts = sorted((r["params"], _value(results, method, mode, r["params"], phase))
                     for r in results if r["method"] == method and r["mode"] == mode)
        ok = [(p, v) for p, v in pts if v is not None]
        if ok:
            ax.plot(*zip(*ok), color=color, ls=ls, marker=marker, label=label)
        failed = [p for p, v in pts if v is None]
        if failed:  # out of memory (or failed): an x on the cap line
            ax.scatter(failed, [max_mb] * len(failed), color=color, marker="x", s=60)
    ax.axhline(max_mb, color="0.5", lw=0.8, ls=":", label=f"cap {max_mb:.0f} MB (x: exceeded)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("generated parameters")
    ax.set_ylabel("peak memory (MB)")
    ax.set_title("peak memory vs model size: RPG vs p-diff")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    import io as _io

    from paramgen import io

    buf = _io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    io.write_bytes(path, buf.getvalue())


# ----------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/memory_scaling", help="output folder")
    ap.add_argument("--sizes", default="2e3,1e4,1e5,1e6,1e7",
                    help="target parameter counts, comma separated")
    ap.add_argument("--methods", default="rpg,pdiff")
    ap.add_argument("--modes", default="sequential,partial,full", help="RPG sampling modes")
    ap.add_argument("--rpg-preset", default="tiny")
    ap.add_argument("--pdiff-preset", default="paper")
    ap.add_argument("--rpg-set", action="append", default=[], metavar="KEY=VALUE",
                    help="RPG config override, e.g. --rpg-set train_window=32 (repeatable)")
    ap.add_argument("--ckpts", type=int, default=4, help="random training checkpoints")
    ap.add_argument("--sample-steps", type=int, default=1, help="DDIM steps when sampling")
    ap.add_argument("--max-mb", type=float, default=6000,
                    help="memory a child may take beyond its imports (MB)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per measurement")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per child")
    ap.add_argument("--device", default="cuda" if _cuda() else "cpu")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(json.loads(args.child))), flush=True)
        return

    sizes = [int(float(s)) for s in args.sizes.split(",") if s.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from paramgen.commands.train import parse_overrides

    common = dict(ckpts=args.ckpts, seed=0, threads=args.threads, device=args.device,
                  max_mb=args.max_mb, sample_steps=args.sample_steps,
                  rpg_set=parse_overrides(args.rpg_set))
    print(f"device {args.device}, cap {args.max_mb:.0f} MB per measurement, {args.ckpts} random "
          f"checkpoints, DDIM {args.sample_steps} step(s), one fresh process per measurement\n",
          flush=True)
    results: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    print(text_table([]).splitlines()[0], flush=True)
    with tempfile.TemporaryDirectory(prefix="memory_scaling_") as tmp:
        for target in sizes:
            params = _params_of(target)
            for method in methods:
                preset = args.rpg_preset if method == "rpg" else args.pdiff_preset
                save = str(Path(tmp) / f"{method}_{params}")
                job = dict(common, method=method, preset=preset, params=target, save=save)
                train = spawn(dict(job, kind="train"), args.timeout)
                if "error" in train:
                    # Sampling is still measured, on an untrained generator of the same shape.
                    prep = spawn(dict(job, kind="prepare"), args.timeout)
                    if "error" in prep:
                        train.setdefault("note", f"prepare failed too: {prep.get('message')}")
                sample_modes = modes if method == "rpg" else ["-"]
                for mode in sample_modes:
                    if Path(save, "config.json").is_file():
                        sample = spawn(dict(job, kind="sample", mode=mode), args.timeout)
                    else:
                        sample = {"error": "no generator", "message": "could not build one"}
                    row = dict(params=params, method=method, mode=mode, preset=preset,
                               train=train, sample=sample)
                    results.append(row)
                    print(text_table(rows_of([row], args.max_mb)).splitlines()[-1], flush=True)
                    for what, res in (("train", train), ("sample", sample)):
                        if res and "error" in res and res["error"] != "oom":
                            print(f"    {what}: {res['error']}: {res.get('message', '')}",
                                  flush=True)
    elapsed = time.perf_counter() - t_start
    rows = rows_of(results, args.max_mb)
    checks = acceptance(results)
    exact = all(r[p].get("exact_peak", True) for r in results for p in ("train", "sample")
                if r[p] and "error" not in r[p])
    notes = [f"device {args.device}; RPG preset {args.rpg_preset!r} {common['rpg_set'] or ''}, p-diff preset "
             f"{args.pdiff_preset!r}; {args.ckpts} random checkpoints; DDIM {args.sample_steps} "
             f"sampling step(s); cap {args.max_mb:.0f} MB per measurement; {elapsed:.0f} s in all.",
             "train-step peak: RSS high-water during fit minus RSS before it. sample peak: RSS "
             "high-water during load + sample of one model to a .safetensors file minus RSS after "
             "imports."
             + ("" if exact else " (peak reset unavailable: peaks are upper bounds)")]
    print("\n" + text_table(rows))
    print("\n" + "\n".join(checks))
    md = ["# Memory scaling: RPG vs p-diff", "", *notes, "", markdown_table(rows), "",
          "## Acceptance checks", "", *[f"- {c}" for c in checks], "",
          "![peak memory vs parameters](memory_scaling.png)", ""]
    from paramgen import io

    io.write_text(out / "memory_scaling.md", "\n".join(md))
    io.write_json(out / "results.json", {"args": vars(args), "results": results,
                                         "checks": checks, "seconds": elapsed})
    plot(results, out / "memory_scaling.png", args.max_mb)
    print(f"\nwrote {out / 'memory_scaling.md'}, {out / 'results.json'}, "
          f"{out / 'memory_scaling.png'}")


def _params_of(target: int) -> int:
    """Parameter count of the MLP the children build for ``target`` (built once here: 40 MB at
    10M parameters, in the parent, whose memory is not measured)."""
    from paramgen.zoo import mlp_family

    return sum(p.numel() for p in mlp_family(target, (64,), 10, depth=2).parameters())


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001  (no torch: the children will say so)
        return False


if __name__ == "__main__":
    main()
