"""RPG: recurrent diffusion for large-scale parameter generation.

A recurrent backbone reads, for every token of a model, its position embedding plus a permutation
state (plus an optional task condition) and emits one prototype per token; a small 1D-conv
diffusion model shared by all tokens denoises each token conditioned on its prototype. Both train
together through the diffusion loss (one stage of the engine). At sampling time the backbone runs
block by block with its state carried, and the sampler denoises each block: one token at a time
(``sequential``: one model at a time, ``SEQUENTIAL_BLOCK`` tokens a call), ``partial_batch`` tokens
of all models at a time (``partial``), or all at once (``full``).

This file is the orchestration; each idea has its module in this package: the settings a fit
uses (choice.py, from presets.py and config.py), the permutation states (states.py), the
networks (network.py), the tokens of a collection (token_store.py), windowed training
(window.py) and sampling block by block (sampling.py).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import Tensor, nn

from paramgen.diffusion import NoiseSchedule, diffusion_loss
from paramgen.methods.base import Generator
from paramgen.methods.fingerprint import Fingerprint
from paramgen.methods.folder import load_module
from paramgen.methods.registry import register_method
from paramgen.methods.rpg.anchor import ANCHOR_MAX_VALUES, anchor_size, seen_tasks
from paramgen.methods.rpg.choice import CollectionFacts, check_override_names, choose_config
from paramgen.methods.rpg.config import RPGConfig
from paramgen.methods.rpg.network import MAX_STATE_POSITION_RUNS, RPGNetwork
from paramgen.methods.rpg.options import OPTIONS
from paramgen.methods.rpg.sampling import autocast, detokenize_blocks, plan_request, token_blocks
from paramgen.methods.rpg.states import (StatePlan, conditions_of_states, pick_states,
                                         plan_states, task_of_state)
from paramgen.methods.rpg.token_store import goes_to_file, token_means
from paramgen.methods.rpg.token_store import tokenize as tokenize_collection
from paramgen.methods.rpg.window import (carry_for, choose_window, noisy_conditions,
                                         training_states, window_loss)
from paramgen.tokenize import SafetensorsSink, StateDictBuilder, Tokenizer
from paramgen.training import Stage, StepContext


@register_method("rpg")
class RPG(Generator):
    """Recurrent diffusion parameter generator. ``RPG(preset="tiny")`` or ``RPG(config=...)``.

    ``RPG()`` with neither lets :meth:`fit` choose: preset ``cpu``, or ``cpu-tasks`` when the
    collection has conditions, plus the size rule's settings for its size (keyword overrides
    apply on top; methods/rpg/choice.py).
    """

    config_cls = RPGConfig
    options = OPTIONS
    config: RPGConfig
    tokenizer: Tokenizer | None
    network: RPGNetwork | None

    def __init__(self, preset: str | None = None, config: RPGConfig | dict | None = None,
                 **overrides: Any):
        self._config: RPGConfig | None = None  # built by _choose (the config property)
        self.auto_settings: dict = {}  # what the size rule added to RPG()'s preset
        super().__init__(preset, config, **overrides)
        # The permutation states (states.py): their kind, count, the run each stands for.
        self._state_kind = "none"
        self._num_states = 0
        self._state_runs: list[int] = []
        # The conditions each permutation state was trained with: rows [R, C] and the state of
        # each row. Sampling a condition picks among the states trained nearest to it.
        self._state_conditions: tuple[Tensor, Tensor] | None = None
        # True when each state is one task of a grid whose task models came from independent
        # initialisations (found by RPG or by pg.align): tasks the generator cannot interpolate.
        self._independent_tasks = False
        self._anchor_tasks = 0  # the seen tasks of the kernel anchor (anchor.py), if any

    # ------------------------------------------------------------------ settings
    def _initial_config(self, preset: str | None, config: Any) -> RPGConfig | None:
        """The config at construction. ``RPG()`` (neither preset nor config) has none until
        :meth:`fit` sees its collection: only the names of its overrides are checked now."""
        if self._auto_preset:
            check_override_names(self._overrides)
            return None
        return self._choose(preset, config)

    def _choose(self, preset: str | None = None, config: Any = None,
                facts: CollectionFacts | None = None) -> RPGConfig:
        """The one place RPG builds its config (choice.py); records the preset and what the
        size rule added."""
        choice = choose_config(preset, config, self._overrides, facts)
        self.preset, self.auto_settings = choice.preset, choice.size_settings
        return choice.config

    @property
    def config(self) -> RPGConfig:
        """The settings in force (before ``fit`` of ``RPG()``: the cpu preset plus overrides)."""
        if self._config is None:  # RPG() read before fit: its settings without a collection
            self._config = self._choose()
        return self._config

    @config.setter
    def config(self, value: RPGConfig | None) -> None:
        self._config = value

    @property
    def schedule(self) -> NoiseSchedule:
        """The diffusion noise schedule of these settings."""
        return NoiseSchedule.of(self.config)

    def settings_summary(self, steps: int | None = None, device: Any = None) -> str:
        """The settings that decide a fit's cost, as one line (printed by `paramgen train`);
        ``steps`` and ``device`` replace the configured ones where a fit resolved them."""
        c = self.config
        window = f"window {c.train_window} tokens" if c.train_window else "whole sequences"
        per_run = (f", rows per run if 2-{MAX_STATE_POSITION_RUNS} runs"
                   if c.state_positions else "")
        positions = c.position_embedding + (f" (lr x{c.position_lr_scale:g}{per_run})"
                                            if c.position_embedding == "learnable" else "")
        means = " + token means" if c.prototype_means else ""
        if c.condition_anchor != "none":
            means += f" + {c.condition_anchor} anchor"
        denoiser = "-".join(str(ch) for ch in c.denoiser_channels)
        return (f"token {c.token_size}, backbone {c.backbone} {c.d_model[0]}{means}, "
                f"denoiser {denoiser}, {window}, "
                f"positions {positions}, "
                f"batch {c.batch_size} checkpoints x {c.diffusion_batch} tokens, "
                f"{c.steps if steps is None else steps} steps, lr {c.lr:g}, sampler {c.sampler}"
                f"{' ' + str(c.sampling_steps) if c.sampling_steps else ''}, "
                f"device {c.device if device is None else device}"
                f"{'' if c.autocast == 'auto' else ', autocast ' + c.autocast}")

    def _build(self, tokenizer: Tokenizer, num_states: int, condition_dim: int | None,
               anchor_tasks: int = 0) -> None:
        self.tokenizer = tokenizer
        self._condition_dim = condition_dim
        self._num_states = num_states
        self._anchor_tasks = anchor_tasks
        self.network = RPGNetwork(self.config, tokenizer.positions, num_states, condition_dim,
                                  runs_as_states=self._state_kind == "run",
                                  shared_state=self._state_kind == "task",
                                  anchor_tasks=anchor_tasks)

    def _anchor_tasks_of(self, cond: Tensor | None, tokenizer: Tokenizer
                         ) -> tuple[Tensor | None, Tensor | None, str | None]:
        """The seen tasks the kernel anchor interpolates (their conditions, and each
        checkpoint's task), or Nones and why not."""
        if self.config.condition_anchor == "none" or cond is None:
            return None, None, None
        tasks, task_of = seen_tasks(cond)
        if len(tasks) < 2:
            return None, None, "no kernel anchor: the collection has one condition"
        size = anchor_size(len(tasks), tokenizer.num_tokens, tokenizer.token_size)
        if size > ANCHOR_MAX_VALUES:
            return None, None, (f"no kernel anchor: {len(tasks)} tasks x "
                                f"{tokenizer.num_tokens * tokenizer.token_size:,} values is "
                                f"over {ANCHOR_MAX_VALUES:,}")
        return tasks, task_of, None

    # ------------------------------------------------------------------ training
    def _fit(self, ckpts, *, steps: int | None = None, seed: int = 0,
             workdir: str | os.PathLike | None = None, progress: bool = True,
             callback=None) -> "RPG":
        """Train on a CheckpointSet (or any sequence of state dicts).

        With ``workdir`` the training state is saved every ``save_every`` steps (or
        ``save_every_seconds``) and a later call with the same workdir, data and settings
        continues from the last save.
        """
        if len(ckpts) == 0:
            raise ValueError("cannot fit RPG on an empty checkpoint collection")
        if self._auto_preset:  # RPG(): the settings follow the collection
            self.config = self._choose(facts=CollectionFacts.of(ckpts))
        cfg = self.config
        steps = cfg.steps if steps is None else int(steps)
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.collection_info = dict(getattr(ckpts, "info", None) or {})
        engine = self._engine()  # resolves the device first: a bad --device fails before work
        said = progress and engine.process_index == 0
        if said:  # before a fit that may take an hour
            print(f"RPG settings ({self.preset}): {self.settings_summary(steps, engine.device)}",
                  flush=True)
        plan = plan_states(cfg.permutation_state, ckpts, self.collection_info)
        if plan.note and said:
            print(plan.note, flush=True)
        self._independent_tasks = plan.independent

        torch.manual_seed(seed)
        part = self._select_keys(ckpts)
        tokenizer = Tokenizer.fit(part, cfg.token_size, cfg.tokenization,
                                  center=cfg.normalization == "value")
        window = choose_window(cfg.train_window, tokenizer.num_tokens)
        # [N, L, T]; large ones on disk when training is windowed (methods/rpg/token_store.py)
        fingerprint = Fingerprint()
        tokens = tokenize_collection(tokenizer, part, len(ckpts), fingerprint, folder=workdir,
                                     to_file=goes_to_file(tokenizer, len(ckpts), window))
        try:
            self._fit_on(tokens, fingerprint, tokenizer, engine,
                         getattr(ckpts, "conditions", None), plan, window, steps, seed,
                         workdir, progress, callback)
        finally:
            tokens.close()
        return self

    def _fit_on(self, tokens, fingerprint: Fingerprint, tokenizer: Tokenizer, engine,
                conditions, plan: StatePlan, window: int, steps: int, seed: int, workdir,
                progress: bool, callback) -> None:
        self._state_kind, self._state_runs = plan.kind, plan.runs
        cond = None if conditions is None else torch.as_tensor(conditions, dtype=torch.float32)
        tasks, task_of, anchor_note = self._anchor_tasks_of(cond, tokenizer)
        self._build(tokenizer, plan.count, None if cond is None else int(cond.shape[1]),
                    anchor_tasks=0 if tasks is None else len(tasks))
        said = progress and engine.process_index == 0
        # Both from the tokens themselves: part of the data, not learned.
        means = self.network.token_means
        if means is not None:
            means.copy_(token_means(tokens, plan.state_of if means.shape[0] > 1 else None,
                                    means.shape[0]))
        if self.network.anchor is not None:
            anchor_note = str(self.network.anchor.fit(tasks,
                                                      token_means(tokens, task_of, len(tasks)),
                                                      held_out=self.config.anchor_held_out))
        if anchor_note and said:
            print(anchor_note, flush=True)
        self._record_conditions(cond)
        self._state_conditions = conditions_of_states(plan.state_of, cond)
        carry = carry_for(self.network, self.config.backbone, tokens.shape[0], tokens.shape[1],
                          window)
        fingerprint.add(cond)
        fingerprint.add(plan.state_of)
        device = engine.device
        # Windowed training builds each window's mask from the valid counts, never [L, T].
        self._train = dict(tokens=tokens.to(device),
                           mask=None if window else tokenizer.mask.to(device),
                           valid=tokenizer.token_valid.to(device),
                           states=None if plan.state_of is None else plan.state_of.to(device),
                           shared_state=self.network.shared_state,
                           conditions=None if cond is None else cond.to(device),
                           steps=steps, window=window, carry=carry)
        try:
            self._run_engine(engine, seed=seed, workdir=workdir, progress=progress,
                             callback=callback, data_fingerprint=fingerprint.hexdigest())
        finally:
            self._train = None

    def training_stages(self) -> list[Stage]:
        cfg = self.config
        return [Stage("diffusion", self._train["steps"], self.network, lr=cfg.lr,
                      weight_decay=cfg.weight_decay, schedule="cosine",
                      min_lr_ratio=cfg.min_lr_ratio, warmup_steps=cfg.warmup_steps,
                      grad_clip=cfg.grad_clip,
                      lr_scales={"position.": cfg.position_lr_scale,
                                 "state_positions": cfg.position_lr_scale})]

    def training_modules(self) -> dict[str, nn.Module]:
        modules = {"network": self.network}
        if self._train["carry"] is not None:
            modules["window_carry"] = self._train["carry"]
        return modules

    def training_loss(self, ctx: StepContext) -> Tensor:
        """Diffusion loss of a random subset of the tokens of a batch of checkpoints."""
        if self._train["window"]:
            return window_loss(self.network, self._train, self.config, self.schedule, ctx)
        cfg, data, net = self.config, self._train, self.network
        tokens = data["tokens"].tensor  # whole-sequence training keeps its tokens in memory
        n, L, T = tokens.shape
        batch = ctx.batch(n, cfg.batch_size).to(ctx.device)
        b = batch.numel()
        per_process = max(1, cfg.diffusion_batch // ctx.num_processes)
        picked = torch.randperm(b * L, generator=ctx.generator)[:min(per_process, b * L)]
        picked = picked.to(ctx.device)
        st = training_states(data["states"], batch, data["shared_state"], cfg, ctx)
        cd = noisy_conditions(data["conditions"], batch, cfg, ctx)
        x0 = tokens[batch].reshape(b * L, T)[picked]
        m = data["mask"].repeat(b, 1)[picked]
        with ctx.autocast():
            protos = net.prototypes(st, cd, b).reshape(b * L, T)[picked]
            return diffusion_loss(lambda xt, t: net.denoise(xt, t, protos), x0, m,
                                  self.schedule, cfg.prediction, generator=ctx.noise)

    # ------------------------------------------------------------------ sampling
    def _require_fitted(self) -> None:
        if self.network is None or self.tokenizer is None:
            raise RuntimeError("this RPG generator is not trained: call fit() or from_pretrained()")

    def _states_and_conditions(self, n: int, condition: Any, seed: int,
                               state: int | Sequence[int] | None, device: torch.device
                               ) -> tuple[Tensor | None, Tensor | None]:
        """Each sample's permutation state (given, or drawn with ``seed``) and condition, as
        states.py decides them."""
        cond = self._conditions(condition, n, device)
        states = pick_states(n, state, torch.Generator().manual_seed(seed), cond,
                             self._num_states, self._state_kind, self._state_conditions)
        cond = task_of_state(cond, states, state, independent=self._independent_tasks,
                             unseen_task=self.config.unseen_task,
                             state_conditions=self._state_conditions)
        return states, cond

    @torch.no_grad()
    def prototypes(self, n: int, condition: Any = None, seed: int = 0,
                   state: int | Sequence[int] | None = None) -> Tensor:
        """The backbone's prototypes [n, L, T] for n models (one permutation state each)."""
        self._require_fitted()
        device = self.device
        net = self.network.to(device).eval()
        states, cond = self._states_and_conditions(n, condition, seed, state, device)
        states = states.to(device) if states is not None else None
        with autocast(self.config.autocast, device):
            return net.prototypes(states, cond, n).float()

    def _token_blocks(self, n: int, condition: Any, seed: int, mode: str | None,
                      sampler: str | None, steps: int | None,
                      state: int | Sequence[int] | None, progress: bool,
                      guidance: float | None = None
                      ) -> Iterator[tuple[list[int], int, Tensor]]:
        """The generated tokens block by block (sampling.py): (models, first token, tokens
        [k, c, T]); the request is checked now, the blocks are made as they are read."""
        self._require_fitted()
        mode, sampler, steps = plan_request(n, mode, sampler, steps, self.config)
        guidance = self._guidance(guidance)
        device = self.device
        net = self.network.to(device).eval()
        states, cond = self._states_and_conditions(n, condition, seed, state, device)
        return token_blocks(net, self.tokenizer, self.config, self.schedule, states, cond, n,
                            seed, mode, sampler, steps, device, progress, guidance)

    def _guidance(self, guidance: float | None) -> float:
        """The classifier-free guidance weight of a call (1: none), refused where it means
        nothing: a generator without conditions or not trained with condition dropout."""
        if guidance is None or guidance == 1.0:
            return 1.0
        if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) \
                or not math.isfinite(guidance) or guidance < 0:
            raise ValueError(f"guidance must be a finite number >= 0, got {guidance!r}")
        if self._condition_dim is None:
            raise ValueError("guidance needs a generator trained with conditions; this one has "
                             "none")
        if self.config.condition_dropout <= 0:
            raise ValueError("guidance needs a generator trained with condition_dropout > 0 "
                             "(it learns the null condition then); this one was trained "
                             "without: fit with --set condition_dropout=0.1")
        return float(guidance)

    @torch.no_grad()
    def _sample(self, n: int, *, seed: int = 0, progress: bool = False, condition: Any = None,
                mode: str | None = None, sampler: str | None = None, steps: int | None = None,
                state: int | Sequence[int] | None = None, guidance: float | None = None,
                return_tokens: bool = False) -> list[dict[str, Tensor]]:
        """Generate ``n`` state dicts.

        ``mode``: sequential (one model and a few tokens at a time: least memory), partial (about
        ``partial_batch`` tokens at a time, default) or full (all tokens of all n models at once).
        ``sampler``/``steps``: ddpm (all timesteps) or ddim with ``steps`` steps.
        ``state``: the permutation state to use (default: drawn at random per model).
        ``guidance``: classifier-free guidance weight for a generator trained with
        ``condition_dropout`` (default 1: none).
        ``return_tokens``: give the raw tokens [n, L, T] instead of state dicts.
        """
        blocks = self._token_blocks(n, condition, seed, mode, sampler, steps, state, progress,
                                    guidance)
        tk = self.tokenizer
        if return_tokens:
            tokens = torch.empty(n, tk.num_tokens, tk.token_size)
            for group, start, x in blocks:
                tokens[group, start:start + x.shape[1]] = x
            return tokens
        builders = [StateDictBuilder(tk) for _ in range(n)]
        detokenize_blocks(tk, blocks, builders)
        return [self._assemble(b.result()) for b in builders]

    @torch.no_grad()
    def _sample_to_files(self, paths: list, *, seed: int = 0, progress: bool = False,
                         metadata: dict[str, str] | None = None, condition: Any = None,
                         mode: str | None = None, sampler: str | None = None,
                         steps: int | None = None,
                         state: int | Sequence[int] | None = None,
                         guidance: float | None = None) -> list[Path]:
        """Sample ``len(paths)`` models straight into ``.safetensors`` files.

        The values go to disk as they are generated: with ``mode="sequential"`` the memory used
        does not grow with the model's size (``benchmarks/memory_scaling.py`` measures it). Each
        file appears only when complete. A partial generator (``keys``) assembles each model
        with its copied tensors in memory first.
        """
        if self.reference:
            return super()._sample_to_files(paths, seed=seed, progress=progress,
                                            metadata=metadata, condition=condition, mode=mode,
                                            sampler=sampler, steps=steps, state=state,
                                            guidance=guidance)
        sinks = []
        try:
            for p in paths:
                sinks.append(SafetensorsSink(self.tokenizer, p, metadata))
            blocks = self._token_blocks(len(sinks), condition, seed, mode, sampler, steps,
                                        state, progress, guidance)
            detokenize_blocks(self.tokenizer, blocks, sinks)
            return [sink.close() for sink in sinks]
        except BaseException:
            for sink in sinks:
                sink.abort()
            raise

    # ------------------------------------------------------------------ files
    def _saved_config(self) -> dict:
        return {"num_states": self._num_states, "permutation_state": self._state_kind,
                "anchor_tasks": self._anchor_tasks,
                "state_runs": self._state_runs, "independent_tasks": self._independent_tasks,
                "tokenizer": self.tokenizer.to_config()}

    def _saved_tensors(self) -> dict[str, Tensor]:
        tensors = {f"network.{k}": v for k, v in self.network.state_dict().items()}
        tensors.update(self.tokenizer.copied_tensors())
        if self._state_conditions is not None:
            tensors["state_conditions.rows"], tensors["state_conditions.state"] = \
                self._state_conditions
        return tensors

    def _restore(self, config: dict, tensors: dict[str, Tensor], where: Path) -> None:
        tokenizer = Tokenizer.from_config(config["tokenizer"], tensors)
        self._state_kind = config["permutation_state"]
        self._state_runs = list(config.get("state_runs") or [])
        self._independent_tasks = bool(config.get("independent_tasks", False))
        self._build(tokenizer, int(config["num_states"]), config.get("condition_dim"),
                    anchor_tasks=int(config.get("anchor_tasks") or 0))
        load_module(self.network, tensors, "network", where)
        # (generators saved before this was recorded draw states at random, as they did)
        rows, owner = tensors.get("state_conditions.rows"), tensors.get("state_conditions.state")
        self._state_conditions = None if rows is None or owner is None else \
            (rows.float(), owner.long())
