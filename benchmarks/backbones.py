"""Time the recurrent backbones at RPG-tiny sizes and print a markdown table.

    python benchmarks/backbones.py                      # d_model 256, d_state 32, 2 layers
    python benchmarks/backbones.py --lengths 64 --batches 4 --variants mamba:chunked lstm

Columns: train step (forward + backward of a squared-output loss) and forward-only (no_grad)
seconds, best of ``--repeat`` runs (the best is the least disturbed by other work on a shared
machine), and the parameter count. ``mambapy`` rows appear when the ``mambapy`` package imports;
it gets the same input projection, final norm and head as our Mamba so only the mixers differ.

On a shared machine set ``OMP_WAIT_POLICY=PASSIVE`` (or ``--threads 1``): OpenMP threads that
spin-wait for a busy core made small ops up to 100x slower in our measurements.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import torch
from torch import Tensor, nn

from paramgen.backbones import build
from paramgen.backbones.common import ProjectionHead

ALL_VARIANTS = ["mamba:chunked", "mamba:parallel", "mamba:ref", "mambapy:pscan",
                "mambapy:seq", "lstm", "transformer", "none"]
DEFAULT_VARIANTS = ["mamba:chunked", "mamba:parallel", "mamba:ref", "mambapy:pscan", "lstm",
                    "transformer", "none"]


class MambapyBackbone(nn.Module):
    """mambapy's Mamba stack inside our input projection / final norm / head."""

    def __init__(self, d_in: int, d_model: int, d_out: int, num_layers: int, d_state: int,
                 d_conv: int, expand: int, pscan: bool):
        super().__init__()
        from mambapy.mamba import Mamba, MambaConfig

        cfg = MambaConfig(d_model=d_model, n_layers=num_layers, d_state=d_state, d_conv=d_conv,
                          expand_factor=expand, pscan=pscan)
        self.in_proj = nn.Linear(d_in, d_model) if d_in != d_model else nn.Identity()
        self.mamba = Mamba(cfg)
        self.norm = nn.RMSNorm(d_model)
        self.head = ProjectionHead(d_model, d_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.norm(self.mamba(self.in_proj(x))))


def make(variant: str, args: argparse.Namespace) -> nn.Module | None:
    """The module for one table row, or None when its package is missing."""
    kind, _, option = variant.partition(":")
    sizes = dict(d_in=args.d_in, d_model=args.d_model, d_out=args.d_out,
                 num_layers=args.layers, d_state=args.d_state, d_conv=4, expand=2)
    if kind == "mambapy":
        try:
            return MambapyBackbone(**sizes, pscan=option != "seq")
        except ImportError:
            return None
    kw = {"scan": option} if kind == "mamba" and option else {}
    return build(kind, **sizes, seed=0, **kw)


def best_time(fn: Callable[[], None], repeat: int) -> float:
    fn()  # warm-up: allocator, lazy kernels
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def measure(net: nn.Module, batch: int, length: int, d_in: int, repeat: int,
            bf16: bool) -> tuple[float, float]:
    x = torch.randn(batch, length, d_in)

    def forward() -> Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return net(x)

    def train_step() -> None:
        net.zero_grad(set_to_none=True)
        forward().float().square().mean().backward()

    def forward_only() -> None:
        with torch.no_grad():
            forward()

    return best_time(train_step, repeat), best_time(forward_only, repeat)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=ALL_VARIANTS,
                   help="rows to time (kind[:option])")
    p.add_argument("--lengths", nargs="+", type=int, default=[16, 64, 256])
    p.add_argument("--batches", nargs="+", type=int, default=[4, 16])
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--d-state", type=int, default=32)
    p.add_argument("--d-in", type=int, default=256)
    p.add_argument("--d-out", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3, help="timed runs per cell (best is shown)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--bf16", action="store_true", help="run under CPU bf16 autocast")
    p.add_argument("--max-seconds", type=float, default=10.0,
                   help="skip cells whose train step is predicted to take longer than this")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{'bf16 autocast' if args.bf16 else 'float32'}, best of {args.repeat}\n")
    print("| variant | d_model | d_state | L | batch | train step s | forward s | params |")
    print("|---|---|---|---|---|---|---|---|")
    for variant in args.variants:
        net = make(variant, args)
        if net is None:
            print(f"| {variant} | - | - | - | - | not installed | - | - |", flush=True)
            continue
        params = sum(p.numel() for p in net.parameters())
        last = None  # (tokens, train seconds) of the last timed cell
        for length in sorted(args.lengths):
            for batch in sorted(args.batches):
                # Cost grows at least linearly in batch * length: skip cells predicted too slow.
                if last and last[1] * batch * length / last[0] > args.max_seconds:
                    cell = ("skipped", "-")
                else:
                    train, fwd = measure(net, batch, length, args.d_in, args.repeat, args.bf16)
                    last = (batch * length, train)
                    cell = (f"{train:.4f}", f"{fwd:.4f}")
                print(f"| {variant} | {args.d_model} | {args.d_state} | {length} | {batch} | "
                      f"{cell[0]} | {cell[1]} | {params:,} |", flush=True)


if __name__ == "__main__":
    main()
