"""p-diff's fit cost against its quality: where the time goes, and how many steps it needs.

    python benchmarks/pdiff_speed.py --collections mlp,cnn-m \\
        --variants "default:" "half:ae_steps=500,ddpm_steps=1000" [--samples 10]

Collections (each ~10K generated values, 20 checkpoints, made once under --root):

* ``mlp``: benchmarks/rpg_parity.py's LayerNorm MLP on mnist1d (12,282 parameters; not a zoo
  model): trained to convergence, then 20 checkpoints of one more pass.
* ``cnn-m``: ``paramgen collect --arch cnn-m --data digits -n 20`` (10,565 parameters, BatchNorm;
  5 runs x 4 checkpoints).

Per variant (``name:key=value,...``: PDiffConfig overrides on ``PDiff()``'s defaults; a value is
read as JSON, e.g. ``dec_channels=[8,16,16,8]``): one fit, timed per stage in CPU seconds of
this process (the engine's callback after every step; autoencoder vs latent DDPM), then
``--samples`` samples with the default sampler: their test accuracy (mean, min, max) against the
checkpoints', their spread as benchmarks/pdiff_spread.py measures it (mean pairwise parameter
distance over the checkpoints' mean norm, and its ratio to the checkpoints' own) and their mean
distance to the nearest checkpoint. One thread; every result is appended to
``--out/results.jsonl`` as it is made, and the table is printed from that file.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

import paramgen as pg
from paramgen.evaluation.core import build_model, load_data_for, load_into, predictions, score
from paramgen.evaluation.novelty import ParamSpace

sys.path.insert(0, str(Path(__file__).parent))
from pdiff_spread import pairwise_spread  # noqa: E402
from rpg_parity import LayerNormMLP, make_collection  # noqa: E402
from sampling import cpu_seconds, markdown, table  # noqa: E402


def collection(which: str, root: Path):
    """(checkpoints, model to evaluate with, test x, test y)."""
    if which == "cnn-m":
        from paramgen.collect import collect

        ckpts = collect("cnn-m", "digits", root / "cnn-m-digits", n=20, progress=False)
        model = build_model(ckpts.info)
        x, y = load_data_for(ckpts.info)
    elif which == "mlp":
        folder = root / "mlp-mnist1d"
        if not (folder / "manifest.json").is_file():
            sds, (x, y) = make_collection(20, 60, 0)
            pg.CheckpointSet.from_state_dicts(sds).save(folder)
            torch.save({"x": x, "y": y}, root / "mlp-mnist1d-test.pt")
        ckpts = pg.CheckpointSet.load(folder)
        test = torch.load(root / "mlp-mnist1d-test.pt")
        x, y, model = test["x"], test["y"], LayerNormMLP()
    else:
        raise SystemExit(f"unknown collection {which!r}: mlp or cnn-m")
    load_into(model, ckpts[0])
    return ckpts, model, x, y


def parse_variant(text: str) -> tuple[str, dict]:
    name, _, rest = text.partition(":")
    overrides = {}
    for item in filter(None, _split(rest)):
        key, _, value = item.partition("=")
        try:
            overrides[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key.strip()] = value
    return name, overrides


def _split(rest: str) -> list[str]:
    """Split on commas outside brackets (``dec_channels=[8,16,16,8],ae_steps=500``)."""
    items, depth, cur = [], 0, ""
    for ch in rest:
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    return items + [cur] if cur else items


def measure(which: str, ckpts, model, x, y, name: str, overrides: dict, samples: int,
            seed: int = 0) -> dict:
    gen = pg.PDiff(**overrides)
    ae_steps = gen.config.ae_steps
    stamps: list[float] = []
    c0, w0 = cpu_seconds(), time.perf_counter()
    gen.fit(ckpts, seed=seed, progress=False, callback=lambda done, loss: stamps.append(
        cpu_seconds()))
    fit_cpu, fit_wall = cpu_seconds() - c0, time.perf_counter() - w0
    ae_cpu = stamps[ae_steps - 1] - c0
    c1 = cpu_seconds()
    out = gen.sample(samples, seed=seed)
    sample_cpu = cpu_seconds() - c1
    originals = list(ckpts)
    acc_o = [100 * float(v) for v in score(predictions(originals, model, x), y)]
    acc_g = [100 * float(v) for v in score(predictions(out, model, x), y)]
    space = ParamSpace(originals)
    so, sg = pairwise_spread(space, originals), pairwise_spread(space, out)
    return dict(collection=which, variant=name, overrides=overrides, seed=seed,
                ae_steps=ae_steps, ddpm_steps=gen.config.ddpm_steps,
                fit_cpu=fit_cpu, fit_wall=fit_wall, ae_cpu=ae_cpu, ddpm_cpu=fit_cpu - ae_cpu,
                sample_cpu=sample_cpu, orig_mean=statistics.mean(acc_o),
                gen_mean=statistics.mean(acc_g), gen_min=min(acc_g), gen_max=max(acc_g),
                orig_spread=so, gen_spread=sg, nn_dist=statistics.mean(space.nearest(out)))


def profile(which: str, ckpts, steps: int = 5) -> None:
    """Where one autoencoder step goes: FLOPs per module (forward + backward) and CPU-ms per
    step at the batch a fit uses (min(ae_batch_size, checkpoints))."""
    from torch.utils.flop_counter import FlopCounterMode

    from paramgen.methods.pdiff import PDiffConfig
    from paramgen.methods.pdiff.network import PDiffNetwork

    cfg = PDiffConfig()
    dim = sum(v.numel() for v in ckpts[0].values() if v.is_floating_point())
    ae = PDiffNetwork(cfg, dim).autoencoder
    v = torch.randn(min(cfg.ae_batch_size, len(ckpts)), dim)
    opt = torch.optim.AdamW(ae.parameters(), cfg.ae_lr)

    def step() -> None:
        opt.zero_grad()
        ((ae(v, cfg.input_noise, cfg.latent_noise, relative=True) - v) ** 2).mean().backward()
        opt.step()

    with FlopCounterMode(display=False) as counter:
        step()
    c0 = cpu_seconds()
    for _ in range(steps):
        step()
    ms = 1e3 * (cpu_seconds() - c0) / steps
    total = counter.get_total_flops()
    print(f"{which}: {dim} values (padded {ae.padded_dim}), batch {v.shape[0]}: AE step "
          f"{total / 1e9:.2f} GFLOP, {ms:.0f} CPU-ms ({total / ms / 1e6:.1f} GFLOP/cpu-s)")
    layers = dict(ae.named_modules())
    for name, ops in sorted(counter.get_flop_counts().items(), key=lambda kv: -sum(kv[1].values())):
        short = name.removeprefix("ParameterAutoencoder.")
        share = sum(ops.values()) / total
        if short in ("encoder", "decoder"):
            print(f"  {short:12s} {share:6.1%}")
        elif name.count(".") == 2 and share >= 0.01:
            print(f"  {short:12s} {share:6.1%}  {layers[short]}")


HEADERS = ["collection", "variant", "AE + DDPM steps", "fit cpu s (AE / DDPM)", "fit wall s",
           "checkpoints %", "samples mean (min-max) %", "spread ratio", "NN dist",
           "sample 10 cpu s"]


def row(r: dict) -> list[str]:
    return [r["collection"], f"{r['variant']} (seed {r.get('seed', 0)})", f"{r['ae_steps']} + {r['ddpm_steps']}",
            f"{r['fit_cpu']:.0f} ({r['ae_cpu']:.0f} / {r['ddpm_cpu']:.0f})",
            f"{r['fit_wall']:.0f}", f"{r['orig_mean']:.2f}",
            f"{r['gen_mean']:.2f} ({r['gen_min']:.2f}-{r['gen_max']:.2f})",
            f"{r['gen_spread'] / r['orig_spread']:.2f}", f"{r['nn_dist']:.4f}",
            f"{r['sample_cpu']:.1f}"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--collections", default="mlp,cnn-m")
    ap.add_argument("--variants", nargs="*", default=["default:"])
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0, help="fit and sampling seed")
    ap.add_argument("--root", default="runs/pdiff_speed")
    ap.add_argument("--out", default="runs/pdiff_speed")
    ap.add_argument("--table-only", action="store_true", help="print the saved results")
    ap.add_argument("--profile", action="store_true",
                    help="only where an autoencoder step's FLOPs and time go, per collection")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    if args.profile:
        for which in args.collections.split(","):
            profile(which, collection(which, Path(args.root))[0])
        return
    if not args.table_only:
        for which in args.collections.split(","):
            ckpts, model, x, y = collection(which, Path(args.root))
            for text in args.variants:
                name, overrides = parse_variant(text)
                r = measure(which, ckpts, model, x, y, name, overrides, args.samples, args.seed)
                with open(results, "a") as f:
                    f.write(json.dumps(r) + "\n")
                print(table(HEADERS, [row(r)]).splitlines()[-1], flush=True)
    rows = [row(json.loads(line)) for line in results.read_text().splitlines() if line]
    print("\n" + table(HEADERS, rows))
    print("\n" + markdown(HEADERS, rows))


if __name__ == "__main__":
    main()
