"""Your own model, trained with plain torch, saved as plain state dicts: the input of the
command-line round trip in examples/own_model.sh.

    python examples/own_model.py my_runs          # my_runs/run0/*.pt, my_runs/run1/*.safetensors,
                                                  # and my_runs/../data.npz (x_test, y_test)

`TinyNet` is what `paramgen ... --model examples/own_model.py:TinyNet` loads: paramgen imports
this file to find the class (the training below runs only when the file is run as a script).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

FEATURES, CLASSES = 16, 3


class TinyNet(nn.Module):
    """A two-layer MLP; `hidden` is a constructor argument (--model-args '{"hidden": 32}')."""

    def __init__(self, hidden: int = 24) -> None:
        super().__init__()
        self.fc1 = nn.Linear(FEATURES, hidden)
        self.fc2 = nn.Linear(hidden, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def make_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three Gaussian blobs in FEATURES dimensions (fixed centres, seeded samples)."""
    centres = torch.randn(CLASSES, FEATURES, generator=torch.Generator().manual_seed(1234))
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, CLASSES, (n,), generator=g)
    x = centres[y] + 1.2 * torch.randn(n, FEATURES, generator=g)
    return x, y


def train_run(run: int, ckpts: int, steps_between: int, folder: Path, fmt: str,
              hidden: int) -> None:
    """One training run from its own seed; a checkpoint every `steps_between` steps after a
    warm-up, so the run's checkpoints spread along its trajectory."""
    torch.manual_seed(run)
    model = TinyNet(hidden)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = make_data(512, seed=100 + run)
    folder.mkdir(parents=True, exist_ok=True)
    for step in range(1, 100 + ckpts * steps_between + 1):
        idx = torch.randint(0, len(x), (64,))
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step > 100 and (step - 100) % steps_between == 0:
            sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
            name = folder / f"step{step:05d}"
            if fmt == "pt":
                torch.save(sd, name.with_suffix(".pt"))
            else:
                save_file(sd, str(name.with_suffix(".safetensors")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder for the runs (one subfolder per run)")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--ckpts", type=int, default=10, help="checkpoints per run")
    parser.add_argument("--every", type=int, default=20, help="steps between checkpoints")
    parser.add_argument("--hidden", type=int, default=24)
    args = parser.parse_args()
    for run in range(args.runs):
        # .pt in even runs, .safetensors in odd ones: paramgen reads both
        train_run(run, args.ckpts, args.every, args.out / f"run{run}",
                  "pt" if run % 2 == 0 else "safetensors", args.hidden)
    x_test, y_test = make_data(1000, seed=7)
    data = args.out.parent / "data.npz"
    np.savez(data, x_test=x_test.numpy(), y_test=y_test.numpy())
    print(f"wrote {args.runs} runs x {args.ckpts} checkpoints to {args.out}, test data to {data}")


if __name__ == "__main__":
    main()
