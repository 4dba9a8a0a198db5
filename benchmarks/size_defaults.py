"""RPG() defaults on a user's own models of several kinds: quality, fit time and peak memory.

Models that are not in the zoo, trained with a plain loop; the last epochs of continued training
of one or several runs give the checkpoints. ``RPG()`` with no preset and no step count then picks
its settings from the collection's size (printed), fits, samples, and every sample is evaluated
next to the checkpoints. One line of the size-rule table per model.

    python benchmarks/size_defaults.py                       # the 1.1M-parameter MLP on digits
    python benchmarks/size_defaults.py --arch deep-ln --width 200 --runs 2
    python benchmarks/size_defaults.py --arch mlp:128,cnn-bn:16 --samples 5   # several models
    python benchmarks/size_defaults.py --arch resnet18 --project   # FLOP/time projection, no fit

Architectures (``--arch NAME[:WIDTH]``): ``mlp`` 64-H-H-10 on digits; ``deep-ln`` a 4-hidden-layer
MLP with LayerNorm on mnist1d (``--depth``); ``cnn-bn`` three conv-BatchNorm layers on digits;
``transformer`` a 2-block pre-norm transformer over 4-value patches of mnist1d; ``resnet18``
BasicBlocks 2-2-2-2, 64-512 channels, BatchNorm, a 3x3 stride-1 stem for 8x8 digits.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

DEFAULT_WIDTH = {"mlp": 1000, "deep-ln": 200, "cnn-bn": 32, "transformer": 96, "resnet18": 64}
DATASET = {"mlp": "digits", "deep-ln": "mnist1d", "cnn-bn": "digits", "transformer": "mnist1d",
           "resnet18": "digits"}


class DeepLN(nn.Module):
    """40 -> (Linear, LayerNorm, ReLU) x depth -> 10."""

    def __init__(self, width: int, depth: int = 4, d_in: int = 40):
        super().__init__()
        layers, d = [], d_in
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.LayerNorm(width), nn.ReLU()]
            d = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        return self.head(self.body(x.flatten(1)))


class CNNBN(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        blocks = []
        for a, b in ((1, c), (c, 2 * c), (2 * c, 2 * c)):
            blocks += [nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU()]
        blocks.insert(6, nn.MaxPool2d(2))
        self.body = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(2 * c, 10)

    def forward(self, x):
        return self.head(self.body(x))


class SmallTransformer(nn.Module):
    """mnist1d's 40 values as 10 patches of 4, 2 pre-norm encoder blocks, mean-pooled."""

    def __init__(self, d: int, blocks: int = 2):
        super().__init__()
        self.embed = nn.Linear(4, d)
        self.pos = nn.Parameter(torch.randn(10, d) * 0.02)
        layer = nn.TransformerEncoderLayer(d, 4, 2 * d, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, blocks, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, 10)

    def forward(self, x):
        h = self.embed(x.reshape(x.shape[0], 10, 4)) + self.pos
        return self.head(self.norm(self.encoder(h)).mean(1))


class BasicBlock(nn.Module):
    def __init__(self, a: int, b: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(a, b, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(b)
        self.conv2 = nn.Conv2d(b, b, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(b)
        self.short = (nn.Sequential(nn.Conv2d(a, b, 1, stride, bias=False), nn.BatchNorm2d(b))
                      if stride != 1 or a != b else nn.Identity())

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.short(x))


class ResNet18(nn.Module):
    """BasicBlocks 2-2-2-2 at w, 2w, 4w, 8w channels (w = 64: 11.2M parameters); the stem is
    one 3x3 stride-1 conv (no max-pool) so an 8x8 digit keeps a 1x1 map at the last stage."""

    def __init__(self, w: int = 64):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w),
                                  nn.ReLU())
        layers, a = [], w
        for i, b in enumerate((w, 2 * w, 4 * w, 8 * w)):
            layers += [BasicBlock(a, b, 1 if i == 0 else 2), BasicBlock(b, b, 1)]
            a = b
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(8 * w, 10)

    def forward(self, x):
        return self.head(self.layers(self.stem(x)).mean((2, 3)))


def user_model(arch: str, width: int, depth: int = 4) -> nn.Module:
    if arch == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(),
                             nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))
    if arch == "deep-ln":
        return DeepLN(width, depth)
    if arch == "cnn-bn":
        return CNNBN(width)
    if arch == "transformer":
        if width % 4:
            raise SystemExit(f"--arch transformer:{width}: the width must be a multiple of 4 "
                             "(4 attention heads)")
        return SmallTransformer(width)
    if arch == "resnet18":
        return ResNet18(width)
    raise SystemExit(f"unknown --arch {arch!r}; known: {', '.join(DEFAULT_WIDTH)}")


def checkpoints(arch: str, width: int, depth: int, n: int, runs: int, seed: int,
                epochs: int = 30) -> tuple[list[dict], list[int], tuple]:
    """n checkpoints from ``runs`` runs (seeds seed, seed+1, ...): each run is trained for
    ``epochs`` epochs, then continued with a checkpoint every half epoch. The run of each."""
    from paramgen.data import load

    x_tr, y_tr, x_te, y_te = load(DATASET[arch])
    out, run_of = [], []
    for r in range(runs):
        torch.manual_seed(seed + r)
        model = user_model(arch, width, depth)
        adam = arch in ("deep-ln", "transformer")  # SGD does not train these in 30 epochs
        opt = (torch.optim.Adam(model.parameters(), lr=1e-3) if adam
               else torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))

        def batches(limit=None):
            for idx in torch.split(torch.randperm(len(x_tr)), 64)[:limit]:
                opt.zero_grad()
                nn.functional.cross_entropy(model(x_tr[idx]), y_tr[idx]).backward()
                opt.step()

        model.train()
        for _ in range(epochs):
            batches()
        per_ckpt = max(1, -(-len(x_tr) // 64) // 2)
        k = n // runs + (1 if r < n % runs else 0)
        for _ in range(k):
            batches(per_ckpt)
            out.append({k_: v.detach().clone() for k_, v in model.state_dict().items()})
            run_of.append(r)
    return out, run_of, (x_te, y_te)


@torch.no_grad()
def accuracy(arch: str, width: int, depth: int, sd: dict, data: tuple) -> float:
    model = user_model(arch, width, depth)
    model.load_state_dict(sd)
    model.eval()
    x, y = data
    return float((model(x).argmax(1) == y).float().mean() * 100)


def layer_errors(samples: list[dict], sds: list[dict], tokenizer) -> list[tuple[str, float, float]]:
    """Per generated tensor: RMS distance of each sample to its nearest checkpoint, in units of
    that tensor's spread over the collection (the tokenizer's std), averaged over samples, and
    beside it the same distance between each checkpoint and its nearest other checkpoint;
    worst ratio first. Says which kind of layer the generator gets wrong."""
    keys = [lay.key for lay in tokenizer.layers]
    std = torch.tensor([lay.std for lay in tokenizer.layers], dtype=torch.float64)
    numel = torch.tensor([sds[0][k].numel() for k in keys], dtype=torch.float64)

    def squared_differences(rows: list[dict], cols: list[dict]) -> torch.Tensor:
        """[len(rows), len(cols), len(keys)]: each tensor's sum of squared differences, pair
        by pair and tensor by tensor: flattening and stacking every checkpoint at once held two
        more copies of the collection (1.7 GB more at 11M)."""
        same = cols is rows
        out = torch.zeros(len(rows), len(cols), len(keys), dtype=torch.float64)
        for i, a in enumerate(rows):
            for j, b in enumerate(cols[i + 1:] if same else cols, start=i + 1 if same else 0):
                out[i, j] = torch.stack([(a[k].float() - b[k].float()).double().pow(2).sum()
                                         for k in keys])
        return out + out.transpose(0, 1) if same else out

    def nearest_rms(diffs: torch.Tensor, exclude_self: bool) -> torch.Tensor:
        """Each row's RMS distance per tensor to its nearest column (over all tensors, in
        spread units), in spread units: [len(keys)] averaged over rows."""
        d2 = (diffs / std ** 2).sum(-1)
        if exclude_self:
            d2.fill_diagonal_(float("inf"))
        near = diffs[torch.arange(len(diffs)), d2.argmin(1)]
        return ((near / numel).sqrt() / std).mean(0)

    spread = dict(zip(keys, nearest_rms(squared_differences(sds, sds), True).tolist()))
    errs = dict(zip(keys, nearest_rms(squared_differences(samples, sds), False).tolist()))
    return sorted(((k, errs[k], spread[k]) for k in keys),
                  key=lambda kv: -kv[1] / max(kv[2], 1e-9))


def diagnostics(gen, sds, arch: str, width: int, args, data) -> dict:
    """Where a generated model's error comes from: the backbone's prototypes used as the model
    (no diffusion) against the samples, each against the nearest checkpoint (token space is the
    tokenizer's normalised units)."""
    tk, k = gen.tokenizer, args.samples
    mask = tk.mask
    ref = torch.stack([tk.tokenize(sd) for sd in sds])                  # [N, L, T]

    def token_err(tokens):  # RMS to the nearest checkpoint, valid slots only
        out = []
        for x in tokens:
            d = ((ref - x) ** 2 * mask).sum((1, 2)) / mask.sum()
            out.append(float(d.min().sqrt()))
        return sum(out) / len(out)

    protos = gen.prototypes(k, seed=0)
    out = {"token_err_prototypes": token_err(protos),
           "token_err_samples": token_err(gen.sample(k, seed=0, return_tokens=True)),
           "prototype_model_mean": sum(accuracy(arch, width, args.depth, gen._assemble(
               tk.detokenize(p)), data) for p in protos) / k}
    return out


def project(args, sds) -> dict:
    """FLOPs and CPU seconds of a training step of ``RPG()``'s settings on this collection, and
    the fit they project to; no fit. Two short fits (2 and 2 + k steps) on the real collection
    share their setup (tokenizing, building), so their difference is k steps; the FLOPs are
    counted on the first (matmuls and convolutions, forward and backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    from paramgen import CheckpointSet
    from paramgen.commands.train import parse_overrides
    from paramgen.methods import RPG

    ckpts = CheckpointSet.from_state_dicts(sds)
    k = 8

    def short_fit(steps):
        gen = RPG(preset=args.preset, **parse_overrides(args.set))
        c0 = time.process_time()
        gen.fit(ckpts, steps=steps, progress=False)
        return gen, time.process_time() - c0

    with FlopCounterMode(display=False) as fc:
        gen, _ = short_fit(2)
    _, base = short_fit(2)
    _, more = short_fit(2 + k)
    cfg = gen.config
    steps = cfg.steps if args.steps is None else args.steps
    tokens = gen.tokenizer.num_tokens
    per_step = (more - base) / k
    flops = fc.get_total_flops() / 2
    # the share of the step's FLOPs in each top-level module the counter saw
    shares = {name: sum(counts.values()) / 2 / flops
              for name, counts in fc.get_flop_counts().items()
              if name != "Global" and name.count(".") <= 1}
    rows_per_step = cfg.diffusion_batch if cfg.train_window else cfg.batch_size * tokens
    return {"settings": gen.settings_summary(steps), "tokens": tokens, "steps": steps,
            "visits_per_token": steps * min(rows_per_step, cfg.diffusion_batch) / tokens,
            "gflop_per_step": flops / 1e9, "cpu_s_per_step": per_step,
            "flop_shares": {k: round(v, 3) for k, v in shares.items()},
            "gflop_per_cpu_s": flops / 1e9 / per_step,
            "flop_per_value_visit": flops / (min(rows_per_step, cfg.diffusion_batch)
                                             * cfg.token_size),
            "projected_fit_cpu_s": per_step * steps, "gflop_fit": flops * steps / 1e9,
            "fit_s_at_40_gflops": flops * steps / 40e9}


def noise_tolerance(arch: str, width: int, args, levels: list[float]) -> dict:
    """Mean accuracy of the first 10 checkpoints with i.i.d. Gaussian noise of each size (in
    units of each tensor's spread over the collection; BatchNorm running statistics untouched)
    added: how precisely a generator must reproduce this model. No fit."""
    sds, _, data = checkpoints(arch, width, args.depth, args.n, args.runs, seed=args.seed,
                               epochs=args.epochs)
    keys = [k for k, v in sds[0].items() if v.is_floating_point() and "running" not in k]
    std = {k: torch.stack([sd[k].float() for sd in sds]).std().item() for k in keys}
    row = {"model": f"{arch}:{width}", "originals": sum(
        accuracy(arch, width, args.depth, sd, data) for sd in sds) / len(sds)}
    for level in levels:
        g = torch.Generator().manual_seed(0)
        acc = []
        for sd in sds[:10]:
            noisy = {k: v + level * std[k] * torch.randn(v.shape, generator=g) if k in std
                     else v for k, v in sd.items()}
            acc.append(accuracy(arch, width, args.depth, noisy, data))
        row[f"noise {level:g}"] = sum(acc) / len(acc)
    print(" | ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in row.items()), flush=True)
    return row


def run_one(arch: str, width: int, args) -> dict:
    from paramgen import CheckpointSet
    from paramgen.commands.train import parse_overrides
    from paramgen.methods import RPG

    if args.noise:
        return noise_tolerance(arch, width, args, [float(x) for x in args.noise.split(",")])
    t_col = time.process_time()
    sds, run_of, data = checkpoints(arch, width, args.depth, args.n, args.runs, seed=args.seed,
                                    epochs=args.epochs)
    col_cpu = time.process_time() - t_col
    params = sum(v.numel() for v in sds[0].values() if v.is_floating_point())
    if args.project:
        p = project(args, sds)
        row = {"model": f"{arch}:{width}", "parameters": params, **p,
               "collection_cpu_s": col_cpu}
        print(json.dumps(row, indent=1), flush=True)
        return row
    orig = [accuracy(arch, width, args.depth, sd, data) for sd in sds]
    overrides = parse_overrides(args.set)
    gen = RPG(preset=args.preset, **overrides)
    ckpts = CheckpointSet.from_state_dicts(sds, runs=run_of)
    steps = args.steps
    if args.visits is not None:  # steps giving this many visits per token
        from paramgen.methods.rpg.choice import CollectionFacts
        from paramgen.methods.rpg.presets import size_settings
        facts = CollectionFacts.of(sds)
        token_size = int(overrides.get("token_size") or size_settings(
            facts.generated_values).get("token_size", 256))
        tokens = -(-facts.generated_values // token_size)
        steps = max(1, round(args.visits * tokens / 256))
    t0, c0 = time.time(), time.process_time()
    losses = []
    gen.fit(ckpts, steps=steps, progress=args.progress,
            callback=lambda step, loss: losses.append(loss))
    fit_s, fit_cpu = time.time() - t0, time.process_time() - c0
    print(f"chosen settings: preset {gen.preset}; " + gen.settings_summary(steps), flush=True)
    t0 = time.time()
    samples = gen.sample(args.samples, seed=0)
    sample_s = (time.time() - t0) / args.samples
    acc = [accuracy(arch, width, args.depth, sd, data) for sd in samples]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    extra = diagnostics(gen, sds, arch, width, args, data) if args.diagnose else {}
    errs = layer_errors(samples, sds, gen.tokenizer)
    worst = errs[:4]
    row = {"model": f"{arch}:{width}", "dataset": DATASET[arch], "runs": args.runs,
           "parameters": params, "checkpoints": len(sds),
           "original_mean": mean(orig), "original_min": min(orig), "original_max": max(orig),
           "generated_mean": mean(acc), "generated_min": min(acc), "generated_max": max(acc),
           "gap": mean(acc) - mean(orig), "fit_s": fit_s, "fit_cpu_s": fit_cpu,
           "steps": steps or gen.config.steps, "final_loss": losses[-1] if losses else None,
           "sample_s_per_model": sample_s, "peak_rss_mb": peak, "collection_cpu_s": col_cpu,
           "settings": gen.settings_summary(steps),
           "worst_layers": [f"{k} err {v:.3f} ckpt-gap {g:.3f}" for k, v, g in worst],
           "all_layers_err": sum(v for _, v, _ in errs) / len(errs),
           "all_layers_ckpt_gap": sum(g for _, _, g in errs) / len(errs), **extra}
    print("| what | value |\n|---|---|")
    for k, v in row.items():
        print(f"| {k} | {v:.2f} |" if isinstance(v, float) else f"| {k} | {v} |", flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="mlp",
                   help="NAME[:WIDTH][,NAME[:WIDTH]...] of " + ", ".join(DEFAULT_WIDTH))
    p.add_argument("--hidden", "--width", dest="width", type=int, default=None,
                   help="width of every --arch without its own")
    p.add_argument("--depth", type=int, default=4, help="hidden layers of deep-ln")
    p.add_argument("-n", type=int, default=20, help="checkpoints")
    p.add_argument("--runs", type=int, default=1, help="runs the checkpoints come from")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=30, help="training before the checkpoints")
    p.add_argument("--samples", type=int, default=10)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--visits", type=float, default=None,
                   help="steps giving this many visits per token (256 tokens a step, of the "
                        "--set token_size, else the size rule's, else 256 values)")
    p.add_argument("--preset", default=None)
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--project", action="store_true",
                   help="measure one training step and project the fit; no fit")
    p.add_argument("--noise", default=None,
                   help="LEVELS (e.g. 0.05,0.1,0.18,0.3): accuracy under weight noise; no fit")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--diagnose", action="store_true",
                   help="also evaluate the prototypes as models and other samplers")
    p.add_argument("--json", default=None, help="also write the results here (a list)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: small models on a shared 2-core machine)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for item in args.arch.split(","):
        arch, _, w = item.partition(":")
        width = int(w) if w else (args.width or DEFAULT_WIDTH.get(arch, 0))
        rows.append(run_one(arch, width, args))
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2))
    if not (args.project or args.noise):
        print("\n| model | data | runs | params | originals mean | generated mean | gap | "
              "fit CPU s | fit wall s | peak MB |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r['model']} | {r['dataset']} | {r['runs']} | {r['parameters']:,} | "
                  f"{r['original_mean']:.2f} | {r['generated_mean']:.2f} | {r['gap']:+.2f} | "
                  f"{r['fit_cpu_s']:.0f} | {r['fit_s']:.0f} | {r['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
