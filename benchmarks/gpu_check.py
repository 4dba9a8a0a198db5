"""The GPU paths in one command: kernels, bf16, an 86M-value model, two processes.

    python benchmarks/gpu_check.py [--install] [--reduced] [--out runs/gpu_check]

Nothing here has run on a GPU yet (no GPU was lent to the sessions that wrote it): on a CUDA
machine this script is the first check of each GPU path. Parts, in order; each ends with one
line ``PART: ok ...``, ``PART: FAILED ...`` or ``PART: skipped (why)``:

* **env**: torch, CUDA, the GPUs, and whether ``mamba_ssm`` and ``causal_conv1d`` import.
* **install** (``--install``, CUDA only): ``pip install mamba-ssm causal-conv1d
  --no-build-isolation`` when either is missing (they build CUDA extensions against the torch in
  place; give the machine a few minutes).
* **kernels** (CUDA with both packages): a ``MambaBackbone`` on the GPU calls
  ``selective_scan_fn`` and ``causal_conv1d_fn`` (each call counted), its output matches the
  pure-PyTorch path of the same weights, and forward + backward is timed on both paths in bf16.
* **bf16-fit**: ``RPG()`` fitted with bf16 autocast and sampled. On CUDA: 20 checkpoints of
  cnn-s on digits (collected on the CPU), the default fit in bf16 and in fp32 on the GPU, the
  mean accuracy of 10 samples of each against the checkpoints'. Reduced (CPU): 8 synthetic
  checkpoints, 20 steps, samples checked for shape and finiteness.
* **vit-base**: the layout of ViT-Base/16 (86.6M values; zoo ViT with dim 768, depth 12, 12 heads,
  224x224 inputs, 1000 classes), untrained: ``RPG()`` chooses its settings for that size, is
  fitted one step on two copies (an untrained generator of that shape costs what a trained one
  costs to sample), and samples one model in the default (partial) mode with the default sampler
  (and with DDIM 60 under ``--vit-ddim60``); time and peak GPU memory against RPG Table 7 (ViT-Base: 20.7 GB; 0.5 / 0.6 /
  0.8 / 1.1 / 1.8 min at 5 / 20 / 60 / 100 / 200 steps, one H100) and Table 13 (partial mode,
  one model: ResNet-18 1.8 min 10.3 GB, ViT-Small 2.9 min 10.5 GB). Reduced (CPU): the same on
  a 1-block ViT of ~10K values, peak process RSS instead of GPU memory.
* **accelerate** (2+ GPUs): ``accelerate launch --multi_gpu --num_processes 2`` of a short
  ``paramgen train`` on the bf16-fit collection; one generator must come out.

Sampling runs the denoiser on 32 tokens a call (``SAMPLING_PIECE``, sized for CPU caches): at
ViT-Base's ~338K tokens that is ~10,600 denoiser calls per solver step (~106K for
DPM-Solver++ 10), so on a GPU expect this sample to be bound by kernel launches: its time is the
figure to compare with Table 7, and the first thing to tune there.

Without CUDA the script runs the reduced parts and names each GPU part it skipped. ``--reduced``
forces the reduced parts on a GPU machine too (a quick smoke run).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

NO_CUDA = "no CUDA device"
PAPER = {
    "table7_vit_base": {"memory_gb": 20.7, "minutes": {5: 0.5, 20: 0.6, 60: 0.8, 100: 1.1,
                                                       200: 1.8}},
    "table13_partial": {"resnet-18": (1.8, 10.3), "vit-small": (2.9, 10.5)},
}


# The reduced (CPU) bf16 fit: a generator small enough for the fast tests.
REDUCED_RPG = dict(token_size=32, d_model=64, d_state=8, denoiser_channels=(1, 8, 16),
                   diffusion_batch=32, sampling_steps=4)


class Report:
    """The one-line verdict of each part, also kept for ``summary.json``."""

    def __init__(self) -> None:
        self.parts: dict[str, dict[str, Any]] = {}

    def _put(self, part: str, status: str, text: str, data: dict | None) -> None:
        self.parts[part] = {"status": status, "text": text, **(data or {})}
        print(f"{part}: {status}{' ' + text if status != 'skipped' else f' ({text})'}",
              flush=True)

    def ok(self, part: str, text: str, data: dict | None = None) -> None:
        self._put(part, "ok", text, data)

    def skip(self, part: str, why: str) -> None:
        self._put(part, "skipped", why, None)

    def fail(self, part: str, why: str) -> None:
        self._put(part, "FAILED", why, None)

    def run(self, part: str, fn: Callable[[], None]) -> None:
        """Run a part; an exception fails that part only (the others still run)."""
        try:
            fn()
        except Exception as exc:  # a check reports every failure, it does not stop at one
            self.fail(part, f"{type(exc).__name__}: {exc}")


def module_version(name: str) -> str | None:
    """The package's version when it imports (its CUDA extension loaded), else None."""
    try:
        mod = importlib.import_module(name)
    except Exception:
        return None
    return str(getattr(mod, "__version__", "?"))


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB on Linux


class Peak:
    """Time and peak memory of a block: GPU memory allocated on CUDA, process RSS otherwise."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda

    def __enter__(self) -> "Peak":
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.memory_gb = torch.cuda.max_memory_allocated() / 2 ** 30
        else:
            self.memory_gb = peak_rss_gb()
        self.seconds = time.perf_counter() - self.t0


# ---------------------------------------------------------------- parts
def part_env(rep: Report) -> None:
    cuda = torch.cuda.is_available()
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda \
        else []
    versions = {name: module_version(name) for name in ("mamba_ssm", "causal_conv1d")}
    rep.ok("env", f"torch {torch.__version__}, CUDA {torch.version.cuda or 'none'}, "
                  f"{len(gpus)} GPU(s) {gpus}, "
                  + ", ".join(f"{k} {v or 'absent'}" for k, v in versions.items()),
           {"gpus": gpus, "versions": versions})


def part_install(rep: Report, wanted: bool, cuda: bool) -> None:
    if not wanted:
        rep.skip("install", "not asked: --install pip-installs mamba-ssm and causal-conv1d")
        return
    if not cuda:
        rep.skip("install", f"{NO_CUDA}: mamba-ssm and causal-conv1d build CUDA kernels only")
        return
    missing = [pkg for pkg, mod in (("causal-conv1d", "causal_conv1d"),
                                    ("mamba-ssm", "mamba_ssm")) if module_version(mod) is None]
    if not missing:
        rep.ok("install", "both already importable")
        return
    cmd = [sys.executable, "-m", "pip", "install", "--no-build-isolation", *missing]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        rep.fail("install", f"{' '.join(cmd)} exited {done.returncode}: {done.stderr[-800:]}")
        return
    importlib.invalidate_caches()
    rep.ok("install", f"installed {missing}")


def part_kernels(rep: Report, cuda: bool) -> None:
    if not cuda:
        rep.skip("kernels", f"{NO_CUDA}: selective_scan_fn and causal_conv1d_fn run on CUDA only")
        return
    from paramgen.backbones import mamba as mamba_module

    mamba_module._cuda_selective_scan.cache_clear()  # --install may have just added them
    mamba_module._cuda_causal_conv1d.cache_clear()
    scan, conv = mamba_module._cuda_selective_scan(), mamba_module._cuda_causal_conv1d()
    absent = [n for n, f in (("mamba_ssm", scan), ("causal_conv1d", conv)) if f is None]
    if absent:
        rep.skip("kernels", f"{', '.join(absent)} not importable (--install installs them)")
        return
    calls = {"selective_scan_fn": 0, "causal_conv1d_fn": 0}

    def counted(name: str, fn: Callable) -> Callable:
        def wrapper(*a: Any, **k: Any) -> Any:
            calls[name] += 1
            return fn(*a, **k)
        return lambda: wrapper

    torch.manual_seed(0)
    net = mamba_module.MambaBackbone(256, 256, 256, d_state=16).cuda()
    x = torch.randn(8, 4096, 256, device="cuda")
    saved = mamba_module._cuda_selective_scan, mamba_module._cuda_causal_conv1d
    try:
        mamba_module._cuda_selective_scan = counted("selective_scan_fn", scan)
        mamba_module._cuda_causal_conv1d = counted("causal_conv1d_fn", conv)
        with torch.no_grad():
            fast = net(x)
    finally:
        mamba_module._cuda_selective_scan, mamba_module._cuda_causal_conv1d = saved
    if not all(calls.values()):
        rep.fail("kernels", f"kernel calls {calls}: the backbone did not use them")
        return
    ref_net = mamba_module.MambaBackbone(256, 256, 256, d_state=16, use_kernel=False).cuda()
    ref_net.load_state_dict(net.state_dict())
    with torch.no_grad():
        ref = ref_net(x)
    err = float((fast - ref).abs().max() / ref.abs().max())

    def fwd_bwd(model: torch.nn.Module) -> float:
        times = []
        for _ in range(4):
            with Peak(True) as p, torch.autocast("cuda", dtype=torch.bfloat16):
                model(x).float().square().mean().backward()
            times.append(p.seconds)
        return min(times[1:])

    t_fast, t_ref = fwd_bwd(net), fwd_bwd(ref_net)
    text = (f"kernel calls {calls}; max |kernel - pure| / max |pure| = {err:.1e} (fp32); "
            f"forward+backward [8, 4096, 256] bf16: kernels {1e3 * t_fast:.1f} ms, "
            f"pure PyTorch {1e3 * t_ref:.1f} ms")
    if err > 1e-3:
        rep.fail("kernels", text)
    else:
        rep.ok("kernels", text, {"calls": calls, "rel_err": err, "ms_kernels": 1e3 * t_fast,
                                 "ms_pure": 1e3 * t_ref})


def synthetic_checkpoints(n: int) -> list[dict[str, torch.Tensor]]:
    """n small MLP state dicts near one base point: enough to exercise fit and sample."""
    g = torch.Generator().manual_seed(0)
    base = {"0.weight": torch.randn(32, 16, generator=g) * 0.25, "0.bias": torch.zeros(32),
            "2.weight": torch.randn(10, 32, generator=g) * 0.18, "2.bias": torch.zeros(10)}
    return [{k: v + 0.01 * torch.randn(v.shape, generator=g) for k, v in base.items()}
            for _ in range(n)]


def part_bf16_fit(rep: Report, cuda: bool, reduced: bool, out: Path) -> None:
    import paramgen as pg

    if reduced or not cuda:
        ckpts = pg.CheckpointSet.from_state_dicts(synthetic_checkpoints(8))
        with Peak(False) as p:  # a small generator: this runs in the fast tests
            gen = pg.RPG(autocast="bf16", device="cpu", **REDUCED_RPG).fit(
                ckpts, steps=20, seed=0, progress=False)
            sds = gen.sample(2, seed=0)
        good = all(sd[k].shape == ckpts[0][k].shape and bool(torch.isfinite(sd[k]).all())
                   for sd in sds for k in sd)
        text = (f"reduced on cpu: 8 synthetic checkpoints, small generator, 20 bf16 steps, 2 samples "
                f"{'finite, shapes right' if good else 'WRONG'} ({p.seconds:.1f} s)")
        (rep.ok if good else rep.fail)("bf16-fit", text)
        return
    from paramgen.collect import collect
    from sampling import accuracies

    ckpts = collect("cnn-s", "digits", out / "cnn-s-digits", n=20, progress=False, device="cpu")
    originals = accuracies(ckpts, ckpts.info)
    rows = {}
    for autocast in ("bf16", "off"):
        with Peak(True) as p:
            gen = pg.RPG(autocast=autocast, device="cuda").fit(ckpts, seed=0, progress=False)
        with Peak(True) as s:
            sds = gen.sample(10, seed=0)
        accs = accuracies(sds, ckpts.info)
        rows[autocast] = {"fit_s": p.seconds, "fit_gb": p.memory_gb, "sample_s": s.seconds,
                          "mean": sum(accs) / len(accs), "min": min(accs), "max": max(accs)}
    mean = sum(originals) / len(originals)
    text = f"checkpoints {mean:.2f}%; " + "; ".join(
        f"{k}: fit {r['fit_s']:.1f} s {r['fit_gb']:.2f} GB, 10 samples {r['sample_s']:.1f} s, "
        f"mean {r['mean']:.2f}% (min {r['min']:.2f}, max {r['max']:.2f})"
        for k, r in rows.items())
    rep.ok("bf16-fit", text, {"checkpoints_mean": mean, **rows})


def vit_base_layout(reduced: bool) -> tuple[str, dict[str, torch.Tensor]]:
    from paramgen.zoo.vit import ViT

    if reduced:  # the same code path on a 1-block ViT of ~10K values
        model = ViT((3, 32, 32), 10, dim=32, depth=1, heads=2, head_dim=16, mlp_dim=64)
        return "ViT 1 block dim 32 (reduced)", model.state_dict()
    model = ViT((3, 224, 224), 1000, dim=768, depth=12, heads=12, head_dim=64, mlp_dim=3072,
                patch_size=16)
    return "ViT-Base/16", model.state_dict()


def part_vit_base(rep: Report, cuda: bool, reduced: bool, ddim60: bool = False) -> None:
    import paramgen as pg

    reduced = reduced or not cuda
    name, sd = vit_base_layout(reduced)
    values = sum(v.numel() for v in sd.values() if v.is_floating_point())
    ckpts = pg.CheckpointSet.from_state_dicts([sd, {k: v.clone() for k, v in sd.items()}])
    device = "cuda" if cuda and not reduced else "cpu"
    gen = pg.RPG(device=device)
    with Peak(device == "cuda") as fit:
        gen.fit(ckpts, steps=1, seed=0, progress=False)
    c = gen.config
    params = sum(p.numel() for p in gen.network.parameters())
    runs = [(c.sampler, c.sampling_steps)] + ([("ddim", 60)] if ddim60 and not reduced else [])
    results = []
    for sampler, steps in runs:
        with Peak(device == "cuda") as s:
            model = gen.sample(1, seed=0, sampler=sampler, steps=steps)[0]
        if set(model) != set(sd):
            raise RuntimeError(f"generated keys differ from the layout's: {sorted(set(model) ^ set(sd))[:5]}")
        results.append({"sampler": sampler, "steps": steps, "s": s.seconds, "gb": s.memory_gb})
    memory = "peak GPU memory" if device == "cuda" else "peak process RSS"
    t7 = PAPER["table7_vit_base"]
    text = (f"{name}, {values / 1e6:.2f}M values, {gen.tokenizer.num_tokens} tokens of "
            f"{c.token_size}; generator {params / 1e6:.1f}M parameters "
            f"(backbone {c.backbone} {c.d_model[0]}, window {c.train_window or 'none'}); "
            f"1-step fit {fit.seconds:.1f} s {fit.memory_gb:.2f} GB; sample 1 model (partial): "
            + "; ".join(f"{r['sampler']} {r['steps']} {r['s']:.1f} s ({r['s'] / 60:.2f} min), "
                        f"{memory} {r['gb']:.2f} GB" for r in results)
            + ("" if reduced else f"; RPG Table 7 ViT-Base on one H100: {t7['memory_gb']} GB, "
               f"{t7['minutes'][60]} min at 60 steps"))
    rep.ok("vit-base", text, {"values": values, "device": device, "fit_s": fit.seconds,
                              "fit_gb": fit.memory_gb, "samples": results})


def part_accelerate(rep: Report, cuda: bool, reduced: bool, out: Path) -> None:
    count = torch.cuda.device_count() if cuda else 0
    if count < 2:
        rep.skip("accelerate", f"{count} GPU(s): the 2-process launch needs 2 or more "
                               "(tests/test_training.py runs one on 2 CPU processes, marked slow)")
        return
    import paramgen as pg

    folder = out / "accelerate-ckpts"
    if reduced:
        pg.CheckpointSet.from_state_dicts(synthetic_checkpoints(8)).save(folder)
    else:
        from paramgen.collect import collect

        collect("cnn-s", "digits", out / "cnn-s-digits", n=20, progress=False, device="cpu")
        folder = out / "cnn-s-digits"
    gen_dir = out / "accelerate-gen"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
           "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "paramgen", "train", "--ckpts", str(folder), "--out", str(gen_dir), "--quiet",
           "--steps", "50", "--device", "cuda"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if done.returncode or "trained on 2 processes" not in done.stdout:
        rep.fail("accelerate", f"exit {done.returncode}: {(done.stdout + done.stderr)[-1500:]}")
        return
    sd = pg.load_generator(gen_dir).sample(1)[0]
    rep.ok("accelerate", f"2 processes, 50 steps in {time.perf_counter() - t0:.1f} s, one "
                         f"generator written, it samples {len(sd)} tensors")


def main(argv: list[str] | None = None) -> Report:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--install", action="store_true",
                    help="pip-install mamba-ssm and causal-conv1d when missing (CUDA only)")
    ap.add_argument("--reduced", action="store_true",
                    help="the CPU-sized parts even on a GPU (always so without CUDA)")
    ap.add_argument("--out", default="runs/gpu_check", help="collections, generators, summary")
    ap.add_argument("--vit-ddim60", action="store_true",
                    help="also sample the ViT-Base layout with DDIM 60 (Table 7's 60-step point; "
                         "6x the default sampler's time)")
    args = ap.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # sampling.py's helpers
    torch.manual_seed(0)
    cuda = torch.cuda.is_available()
    if not cuda:
        torch.set_num_threads(1)  # the shared CPU machine: one thread per process
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rep = Report()
    part_env(rep)
    part_install(rep, args.install, cuda)
    rep.run("kernels", lambda: part_kernels(rep, cuda))
    rep.run("bf16-fit", lambda: part_bf16_fit(rep, cuda, args.reduced, out))
    rep.run("vit-base", lambda: part_vit_base(rep, cuda, args.reduced, args.vit_ddim60))
    with tempfile.TemporaryDirectory() as tmp:
        rep.run("accelerate", lambda: part_accelerate(rep, cuda, args.reduced,
                                                      Path(tmp) if args.reduced else out))
    from paramgen import io

    io.write_text(out / "summary.json", json.dumps(rep.parts, indent=2, default=str) + "\n")
    skipped = [k for k, v in rep.parts.items() if v["status"] == "skipped"]
    failed = [k for k, v in rep.parts.items() if v["status"] == "FAILED"]
    print(f"summary: {len(rep.parts) - len(skipped) - len(failed)} ok, skipped {skipped}, "
          f"failed {failed}; {out / 'summary.json'}")
    return rep


if __name__ == "__main__":
    sys.exit(1 if any(v["status"] == "FAILED" for v in main().parts.values()) else 0)
