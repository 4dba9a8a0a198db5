"""A temporary training loop for IGPG's two stages, shaped like paramgen.training's stages.

Replaced by the shared engine once it lands: each stage is (name, steps, module, lr, weight
decay) plus a loss function of the step; AdamW, linear warm-up then linear decay, gradient
clipping, a progress bar, a history, and a save of the stage's state every ``save_every`` steps
(resumed from when the same workdir is given again).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from paramgen import io


@dataclass
class Stage:
    name: str
    steps: int
    module: nn.Module
    lr: float
    weight_decay: float
    loss: Callable[[int], tuple[Tensor, dict]]     # step -> (loss, logged values)


def linear_lr(step: int, total: int, lr: float, warmup: int, min_ratio: float) -> float:
    if warmup and step < warmup:
        return lr * (step + 1) / warmup
    progress = min(max(step - warmup, 0) / max(total - warmup, 1), 1.0)
    return lr * (1.0 - (1.0 - min_ratio) * progress)


def run_stage(stage: Stage, *, warmup: int, min_lr_ratio: float, grad_clip: float,
              save_every: int, state_path: Path | None, fingerprint: str,
              rng: list[torch.Generator], progress: bool, history: list[dict]) -> float:
    """Train one stage; returns its wall time in seconds."""
    from tqdm.auto import tqdm

    opt = torch.optim.AdamW(stage.module.parameters(), lr=stage.lr,
                            weight_decay=stage.weight_decay)
    start = 0
    if state_path is not None and state_path.is_file():
        saved = torch.load(state_path, weights_only=False, map_location="cpu")
        if saved.get("fingerprint") != fingerprint:
            raise ValueError(f"{state_path} was saved for other data or another config; use a "
                             "new workdir or delete that file to start over")
        stage.module.load_state_dict(saved["module"])
        opt.load_state_dict(saved["optimizer"])
        for g, s in zip(rng, saved["rng"]):
            g.set_state(s)
        start = int(saved["step"])
        history[:] = saved.get("history", history)
    t0 = time.time()
    bar = tqdm(total=stage.steps, initial=start, desc=f"igpg {stage.name}",
               disable=not progress, dynamic_ncols=True)
    stage.module.train()
    ema = None
    for step in range(start, stage.steps):
        for group in opt.param_groups:
            group["lr"] = linear_lr(step, stage.steps, stage.lr, warmup, min_lr_ratio)
        loss, logged = stage.loss(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            nn.utils.clip_grad_norm_(stage.module.parameters(), grad_clip)
        opt.step()
        value = float(loss.detach())
        ema = value if ema is None else 0.98 * ema + 0.02 * value
        bar.update(1)
        if step % 10 == 0 or step == stage.steps - 1:
            bar.set_postfix(loss=f"{ema:.4f}")
            history.append({"stage": stage.name, "step": step + 1, "loss": ema, **logged})
        done = step + 1
        if state_path is not None and (done % save_every == 0 or done == stage.steps):
            io.save_torch(state_path, {"fingerprint": fingerprint, "step": done,
                                       "module": stage.module.state_dict(),
                                       "optimizer": opt.state_dict(),
                                       "rng": [g.get_state() for g in rng],
                                       "history": history})
    bar.close()
    stage.module.eval()
    return time.time() - t0
