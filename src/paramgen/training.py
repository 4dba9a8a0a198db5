"""The one training loop every generator trains on, built on Hugging Face accelerate.

A method describes *what* to train: its stages (:class:`Stage`: the module a stage trains, its
steps, learning rate and schedule) and its loss for one step (``training_loss(ctx)``). This
module does the rest, the same way for every method: device and process setup, autocast,
AdamW, warmup + cosine (or constant, or linear) learning rate, gradient clipping, a progress bar
with the loss, history and a callback, periodic and time-based saves of the training state
(one safetensors file committed atomically, see :mod:`paramgen.train_state`), and resume.

**Signals.** SIGINT (Ctrl-C) and SIGTERM (a scheduler, ``timeout``) during :meth:`Engine.fit`
finish the step in progress, save the state at that step and raise
:class:`paramgen.interrupts.Interrupted` (the command line prints one line and exits 130 or
143); the same call again resumes from that step.

**Many processes.** Started with ``accelerate launch --multi_gpu --num_processes N``, every
process runs this same loop: the global batch of each step is drawn identically everywhere from
the step's seed, each process computes the loss on its own shard of it, and the gradients (and
the logged loss) are averaged with one all-reduce per step, so all processes hold identical
weights. Only the main process prints and writes files.

**Randomness per step.** Batch choice and diffusion noise come from generators seeded by
(seed, step, process): a resumed run draws exactly what an uninterrupted one would, with no
random-number state to save, whatever the number of processes.
"""

from __future__ import annotations

import functools
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import torch
from torch import Tensor, nn

from paramgen import train_state
from paramgen.interrupts import Interrupted, StopRequests
from paramgen.notices import progress_bar

SCHEDULES = ("cosine", "constant", "linear")
AUTOCAST = ("auto", "bf16", "off")


@dataclass
class Stage:
    """One phase of training: which module's parameters learn, for how long, how fast."""

    name: str
    steps: int
    module: nn.Module
    lr: float
    weight_decay: float = 0.0
    schedule: str = "cosine"       # cosine | constant | linear (each after the warmup)
    min_lr_ratio: float = 0.0      # cosine / linear decay to lr * min_lr_ratio
    warmup_steps: int = 0
    grad_clip: float = 0.0         # max gradient norm; 0 disables clipping
    # Learning-rate multipliers by parameter-name prefix (the first matching prefix wins), for
    # parameters that need their own pace, e.g. a table row that gets a gradient only when its
    # token is in the batch.
    lr_scales: dict[str, float] = field(default_factory=dict)

    def param_groups(self) -> list[dict]:
        """The module's trainable parameters as optimizer groups, one per learning-rate scale."""
        groups: dict[float, list] = {}
        for name, p in self.module.named_parameters():
            if not p.requires_grad:
                continue
            scale = next((v for k, v in self.lr_scales.items() if name.startswith(k)), 1.0)
            groups.setdefault(float(scale), []).append(p)
        return [dict(params=ps, lr=self.lr * scale, lr_scale=scale)
                for scale, ps in groups.items()]

    def lr_at(self, step: int) -> float:
        """Learning rate at ``step`` (0-based, within this stage)."""
        if self.warmup_steps and step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.schedule == "constant":
            return self.lr
        span = max(self.steps - self.warmup_steps - 1, 1)
        progress = min(max(step - self.warmup_steps, 0) / span, 1.0)
        if self.schedule == "linear":
            decay = 1.0 - progress
        else:
            decay = 0.5 * (1 + math.cos(math.pi * progress))
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * decay)


@dataclass
class Runtime:
    """Where and how training runs; none of it changes what is learned (so not in resume checks)."""

    device: str = "auto"             # auto (CUDA if available) | cpu | cuda | cuda:N
    autocast: str = "auto"           # auto (bf16 on CUDA, off on CPU) | bf16 | off
    save_every: int = 500            # steps between saves (with a workdir)
    save_every_seconds: float = 60.0  # ... or seconds, whichever comes first


def _mix(*values: int) -> int:
    """A 63-bit seed from several integers (a fixed, well-spread mixing of the inputs)."""
    h = 0x243F6A8885A308D3
    for v in values:
        h = (h ^ (int(v) & 0xFFFFFFFFFFFFFFFF)) * 0x100000001B3 & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 29
    return h & 0x7FFFFFFFFFFFFFFF


@dataclass
class StepContext:
    """What a method's ``training_loss`` gets for one step."""

    step: int                      # global step, 0-based, across stages
    stage: Stage
    stage_step: int                # step within the stage
    device: torch.device
    process_index: int
    num_processes: int
    generator: torch.Generator     # CPU, identical on every process: batch choice
    noise: torch.Generator         # on the device, one stream per process: diffusion noise
    autocast_dtype: torch.dtype | None
    reduce_sum: Callable[[Tensor], Tensor] = lambda t: t   # sum over processes

    def batch(self, n: int, size: int) -> Tensor:
        """This process's share of a random global batch of ``size`` indices out of ``n``."""
        chosen = torch.randperm(n, generator=self.generator)[:min(size, n)]
        return self.shard(chosen)

    def shard(self, items: Tensor) -> Tensor:
        """Items ``process_index``, ``process_index + P``, ... of a global selection."""
        if self.num_processes == 1:
            return items
        mine = items[self.process_index::self.num_processes]
        # A process whose share is empty (batch smaller than the process count) repeats one item
        # rather than contributing nothing: every process must produce a gradient.
        return mine if mine.numel() else items[:1]

    def autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)


class Trainable(Protocol):
    """What a method gives the engine."""

    def training_stages(self) -> list[Stage]: ...

    def training_loss(self, ctx: StepContext) -> Tensor: ...

    # Optional: ``training_modules() -> dict[str, nn.Module]`` (what a save holds; default: the
    # stages' modules), ``on_stage_start(stage)``, ``on_stage_end(stage)`` and
    # ``save_due(step) -> bool`` (also save after this step, counted from 1: e.g. a collection
    # run's checkpoints).


@dataclass
class TrainReport:
    steps: int
    seconds: float
    processes: int
    device: str
    resumed_from: int = 0
    history: list[dict] = field(default_factory=list)

    def summary(self) -> str:
        where = f"{self.processes} process{'es' if self.processes != 1 else ''}"
        return f"trained on {where} ({self.device}), {self.steps} steps in {self.seconds:.0f} s"


def resolve_device(name: str | torch.device | None) -> torch.device:
    """The device a run asks for ("auto" or None: CUDA when available, else the CPU), with a
    clear error naming the ``--device`` value when it is not there. paramgen's one device
    resolver: generators and classifier training (collect, grids, adapters, fine-tuning) alike."""
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(f"--device {str(name)!r} is not a torch device (use auto, cpu, cuda or "
                         "cuda:N)") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {str(name)!r} asked for, but this torch build sees no CUDA GPU "
                         "(torch.cuda.is_available() is False); use --device cpu or auto")
    if device.type == "cuda" and device.index is not None and \
            device.index >= torch.cuda.device_count():
        raise ValueError(f"--device {str(name)!r}: this machine has {torch.cuda.device_count()} "
                         "CUDA device(s)")
    if device.type not in ("cpu", "cuda", "meta"):
        raise ValueError(f"--device {str(name)!r}: paramgen runs on cpu or cuda")
    return device


def mix_seed(*values: int) -> int:
    """A 63-bit seed from several integers: the Engine's way to give each step (or epoch) its
    own random stream, so that nothing random needs saving for a bit-exact resume."""
    return _mix(*values)


@functools.cache
def cpu_computes_bf16() -> bool:
    """Whether this CPU has bf16 arithmetic in hardware (x86 AVX512-BF16 or AMX-BF16, read from
    /proc/cpuinfo; False where that cannot be read). Without it, bf16 autocast on the CPU is
    emulated and slower than float32."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[-1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def autocast_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    if mode not in AUTOCAST:
        raise ValueError(f"autocast must be one of {AUTOCAST}, got {mode!r}")
    if mode == "bf16" or (mode == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def _accelerator(device: torch.device):
    """accelerate's view of the processes (one, or many under ``accelerate launch``)."""
    from accelerate import Accelerator

    try:
        return Accelerator(cpu=device.type == "cpu", mixed_precision="no")
    except ValueError as exc:
        # accelerate sets its process state up once per process and then refuses cpu=True when
        # it was made for a GPU. A single process trains on the device it asked for whatever that
        # state says (Engine.device), so a CPU run after a GPU run in one process takes it as is.
        # Any other refusal (e.g. a half-launched multi-process run) stands.
        if device.type != "cpu" or "already been initialized" not in str(exc):
            raise
        return Accelerator(mixed_precision="no")


class Engine:
    """Trains one :class:`Trainable`. ``Engine(runtime).fit(method, seed=..., ...)``."""

    def __init__(self, runtime: Runtime | None = None):
        self.runtime = runtime or Runtime()
        if int(self.runtime.save_every) < 1:
            raise ValueError(f"save_every must be a positive number of steps, got "
                             f"{self.runtime.save_every!r}")
        if not float(self.runtime.save_every_seconds) > 0:
            raise ValueError(f"save_every_seconds must be > 0, got "
                             f"{self.runtime.save_every_seconds!r}")
        device = resolve_device(self.runtime.device)
        self.accelerator = _accelerator(device)
        self.num_processes = self.accelerator.num_processes
        self.process_index = self.accelerator.process_index
        self.is_main = self.accelerator.is_main_process
        # Under a multi-process launch, accelerate assigns each process its device.
        self.device = self.accelerator.device if self.num_processes > 1 else device
        self.autocast_dtype = autocast_dtype(self.runtime.autocast, self.device)

    # ------------------------------------------------------------------ the loop
    def fit(self, method: Trainable, *, seed: int = 0,
            workdir: str | os.PathLike | None = None, identity: dict | None = None,
            progress: bool = True, callback: Callable[[int, float], None] | None = None,
            desc: str = "fit") -> TrainReport:
        """Run every stage of ``method`` to its end, resuming from ``workdir`` when it holds a
        save of the same run (``identity``: data and settings fingerprints, seed, steps)."""
        stages = method.training_stages()
        if not stages:
            raise ValueError("a method must have at least one training stage")
        for s in stages:
            if int(s.steps) < 1:
                raise ValueError(f"stage {s.name!r} needs at least 1 step, got {s.steps}")
            if s.schedule not in SCHEDULES:
                raise ValueError(f"stage {s.name!r}: schedule must be one of {SCHEDULES}")
        total = sum(s.steps for s in stages)
        identity = dict(identity or {}, seed=int(seed), stage_steps=[int(s.steps) for s in stages])
        optimizers = [torch.optim.AdamW(s.param_groups(), lr=s.lr,
                                        weight_decay=s.weight_decay, foreach=True)
                      for s in stages]
        modules = (method.training_modules() if hasattr(method, "training_modules")
                   else _modules_of(stages))
        history: list[dict] = []
        start = 0
        if workdir is not None and self.is_main:
            train_state.discard_partial(workdir)  # temporaries of saves a kill cut short
        if workdir is not None and train_state.exists(workdir):
            start, history = self._resume(workdir, identity, modules, optimizers)
        report = TrainReport(steps=total, seconds=0.0, processes=self.num_processes,
                             device=str(self.device), resumed_from=start, history=history)
        for m in modules.values():
            m.to(self.device)
        bar = progress_bar(total, desc, progress and self.is_main, initial=start)
        ema = history[-1]["loss"] if history else None
        last_save = time.time()
        t0 = time.time()
        bounds = _stage_bounds(stages)
        stop = StopRequests().install()  # Ctrl-C / SIGTERM: finish the step, save, stop
        try:
            for step in range(start, total):
                k, offset = _stage_at(bounds, step)
                stage, opt = stages[k], optimizers[k]
                if step == offset and step > 0 and hasattr(method, "on_stage_start"):
                    method.on_stage_start(stage)
                if step == offset:
                    ema = None  # each stage's loss lives on its own scale
                value = self._step(method, stage, opt, step, step - offset, seed)
                ema = value if ema is None else 0.98 * ema + 0.02 * value
                done = step + 1
                bar.update(1)
                stage_end = done == offset + stage.steps
                if step % 10 == 0 or stage_end:
                    bar.set_postfix(stage=stage.name, loss=f"{ema:.4g}")
                    history.append({"step": done, "stage": stage.name, "loss": ema})
                if stage_end and hasattr(method, "on_stage_end"):
                    method.on_stage_end(stage)
                if callback is not None:
                    callback(done, ema)
                due = (done % self.runtime.save_every == 0 or stage_end or
                       time.time() - last_save >= self.runtime.save_every_seconds or
                       _save_due(method, done))
                if workdir is not None and due:
                    self._save(workdir, identity, done, modules, optimizers, history)
                    last_save = time.time()
                signum = self._stop_signal(stop)
                if signum is not None:  # Ctrl-C or SIGTERM: save this step, then stop
                    if workdir is not None and not due:
                        self._save(workdir, identity, done, modules, optimizers, history)
                    raise Interrupted(signum, step=done, saved_to=workdir)
        finally:
            stop.uninstall()
            bar.close()
        report.seconds = time.time() - t0
        for m in modules.values():
            m.eval()
        return report

    def _step(self, method: Trainable, stage: Stage, opt: torch.optim.Optimizer, step: int,
              stage_step: int, seed: int) -> float:
        module = stage.module
        module.train()
        for group in opt.param_groups:
            group["lr"] = stage.lr_at(stage_step) * group.get("lr_scale", 1.0)
        ctx = StepContext(
            step=step, stage=stage, stage_step=stage_step, device=self.device,
            process_index=self.process_index, num_processes=self.num_processes,
            generator=torch.Generator().manual_seed(_mix(seed, step, 0)),
            noise=torch.Generator(device=self.device).manual_seed(
                _mix(seed, step, 1 + self.process_index)),
            autocast_dtype=self.autocast_dtype, reduce_sum=self._reduce_sum)
        loss = method.training_loss(ctx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        value = self._average(module, loss.detach().float())
        if stage.grad_clip:
            nn.utils.clip_grad_norm_(module.parameters(), stage.grad_clip)
        opt.step()
        return value

    def _stop_signal(self, stop: StopRequests) -> int | None:
        """The signal that asks this run to stop, if any. Under many processes every process
        must stop at the same step (or the next all-reduce would wait forever): they agree on
        the largest signal any of them got."""
        if self.num_processes == 1:
            return stop.signal
        got = torch.tensor([stop.signal or 0], device=self.device)
        signum = int(self.accelerator.gather(got).max())
        return signum or None

    def _reduce_sum(self, tensor: Tensor) -> Tensor:
        if self.num_processes == 1:
            return tensor
        return self.accelerator.reduce(tensor, reduction="sum")

    def _average(self, module: nn.Module, loss: Tensor) -> float:
        """Average gradients and the loss over processes: one all-reduce of one flat buffer."""
        if self.num_processes == 1:
            return float(loss)
        params = [p for p in module.parameters() if p.requires_grad]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in params] + [loss.reshape(1)])
        flat = self.accelerator.reduce(flat, reduction="mean")
        offset = 0
        for p in params:
            n = p.numel()
            p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
            offset += n
        return float(flat[-1])

    # ------------------------------------------------------------------ save / resume
    def _save(self, workdir, identity: dict, step: int, modules: dict[str, nn.Module],
              optimizers: Sequence[torch.optim.Optimizer], history: list[dict]) -> None:
        if not self.is_main:
            return
        train_state.save(workdir, {
            "identity": identity, "step": step, "history": history,
            "modules": {name: m.state_dict() for name, m in modules.items()},
            "optimizers": [o.state_dict() for o in optimizers],
        })

    def _resume(self, workdir, identity: dict, modules: dict[str, nn.Module],
                optimizers: Sequence[torch.optim.Optimizer]) -> tuple[int, list[dict]]:
        saved = train_state.load(workdir)
        where = train_state.paths(workdir)[0]
        before = saved.get("identity") or {}
        differs = [k for k in sorted(set(before) | set(identity))
                   if before.get(k) != identity.get(k)]
        if differs:
            described = "; ".join(
                f"{k}: saved {_short(before.get(k))}, now {_short(identity.get(k))}"
                for k in differs)
            raise ValueError(f"{where} holds a training run with other data or another config "
                             f"({described}). Run with the same settings to resume it, or "
                             "start over (`paramgen train --restart`, or a new workdir)")
        for name, m in modules.items():
            if name not in saved["modules"]:
                raise ValueError(f"{where} lacks the weights of {name!r}")
            m.load_state_dict(saved["modules"][name])
        for o, state in zip(optimizers, saved["optimizers"]):
            o.load_state_dict(state)
        return int(saved["step"]), list(saved.get("history", []))


def _save_due(method: Trainable, step: int) -> bool:
    """Whether ``method`` asks for a save after ``step`` (its optional ``save_due`` hook)."""
    hook = getattr(method, "save_due", None)
    return bool(hook is not None and hook(step))


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _modules_of(stages: Sequence[Stage]) -> dict[str, nn.Module]:
    out: dict[str, nn.Module] = {}
    for s in stages:
        if not any(m is s.module for m in out.values()):
            out[s.name] = s.module
    return out


def _stage_bounds(stages: Sequence[Stage]) -> list[int]:
    bounds, acc = [], 0
    for s in stages:
        bounds.append(acc)
        acc += s.steps
    return bounds


def _stage_at(bounds: list[int], step: int) -> tuple[int, int]:
    k = max(i for i, b in enumerate(bounds) if b <= step)
    return k, bounds[k]
