"""RPG: recurrent diffusion for large-scale parameter generation.

A recurrent backbone reads, for every token of a model, its position embedding plus a permutation
state (plus an optional task condition) and emits one prototype per token; a small 1D-conv
diffusion model shared by all tokens denoises each token conditioned on its prototype. Both train
together through the diffusion loss (one stage of the engine). At sampling time the backbone runs
block by block with its state carried, and the sampler denoises each block: one token at a time
(``sequential``: one model at a time, ``SEQUENTIAL_BLOCK`` tokens a call), ``partial_batch`` tokens
of all models at a time (``partial``), or all at once (``full``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import Tensor, nn

from paramgen.diffusion import NoiseSchedule, diffusion_loss, sampling_plan
from paramgen.diffusion import sample as run_sampler
from paramgen.methods.base import Generator, check_finite
from paramgen.methods.fingerprint import Fingerprint
from paramgen.methods.folder import load_module
from paramgen import notices
from paramgen.methods.registry import register_method
from paramgen.methods.rpg.config import SAMPLING_MODES, RPGConfig
from paramgen.methods.rpg.network import RPGNetwork
from paramgen.methods.rpg.options import OPTIONS
from paramgen.methods.rpg.token_store import goes_to_file
from paramgen.methods.rpg.token_store import tokenize as tokenize_collection
from paramgen.methods.rpg.window import WindowCarry, window_index
from paramgen.tokenize import (Detokenizer, SafetensorsSink, StateDictBuilder, Tokenizer,
                               slot_mask)
from paramgen.training import Stage, StepContext


# Tokens denoised per call in sequential mode: the memory of a block this size is a few MB
# whatever the model's size, and the per-call overhead is shared by this many tokens.
SEQUENTIAL_BLOCK = 32
# Rows (model x token) per backbone call and per denoiser call when sampling, in every mode.
# The denoiser (a U-Net over each token's values, with skips) holds ~1 KB per value per channel
# level, and the backbone's scan a chunk of states per token: a block of 256 tokens in one call
# took ~100 MB and made partial mode's memory grow with the model up to that block size. In
# pieces of 32 rows both stay at a few MB, and sampling got faster, not slower: the pieces stay
# in cache (docs/performance.md, "Training cost bounded in model size").
SAMPLING_PIECE = 32


@register_method("rpg")
class RPG(Generator):
    """Recurrent diffusion parameter generator. ``RPG(preset="tiny")`` or ``RPG(config=...)``.

    ``RPG()`` with neither lets :meth:`fit` choose: preset ``cpu``, or ``cpu-tasks`` when the
    collection has conditions (keyword overrides apply on top of either).
    """

    config_cls = RPGConfig
    options = OPTIONS
    config: RPGConfig
    tokenizer: Tokenizer | None
    network: RPGNetwork | None

    def __init__(self, preset: str | None = None, config: RPGConfig | dict | None = None,
                 **overrides: Any):
        super().__init__(preset, config, **overrides)
        self._state_kind = "none"
        self._num_states = 0
        self._state_runs: list[int] = []
        # The conditions each permutation state was trained with: rows [R, C] and the state of
        # each row. Sampling a condition picks among the states trained nearest to it.
        self._state_conditions: tuple[Tensor, Tensor] | None = None
        # True when each state is one task of a grid whose task models came from independent
        # initialisations (found by RPG or by pg.align): tasks the generator cannot interpolate.
        self._independent_tasks = False

    @property
    def schedule(self) -> NoiseSchedule:
        return NoiseSchedule.of(self.config)

    def auto_preset_for(self, ckpts) -> str:
        return "cpu-tasks" if getattr(ckpts, "conditions", None) is not None else "cpu"

    def _choose_preset(self, ckpts) -> None:
        """No preset and no config given: the cpu preset for the collection's kind, plus the
        size rule's settings for its number of generated values (``presets.SIZE_RULES``);
        keyword overrides win over both."""
        if not self._auto_preset:
            return
        from paramgen.methods.rpg.presets import size_settings
        from paramgen.tokenize import is_generated

        first = ckpts[0]
        values = sum(v.numel() for v in first.values() if is_generated(v))
        self.preset = self.auto_preset_for(ckpts)
        token_size = self._overrides.get("token_size",
                                         RPGConfig.from_preset(self.preset).token_size)
        self.auto_settings = size_settings(values, token_size)
        self.config = RPGConfig.from_preset(self.preset, **{**self.auto_settings,
                                                            **self._overrides})

    def settings_summary(self, steps: int | None = None, device: Any = None) -> str:
        """The settings that decide a fit's cost, as one line (printed by `paramgen train`);
        ``steps`` and ``device`` replace the configured ones where a fit resolved them."""
        c = self.config
        window = f"window {c.train_window} tokens" if c.train_window else "whole sequences"
        positions = c.position_embedding + (f" (lr x{c.position_lr_scale:g})"
                                            if c.position_embedding == "learnable" else "")
        return (f"token {c.token_size}, backbone {c.backbone} {c.d_model[0]}, {window}, "
                f"positions {positions}, "
                f"batch {c.batch_size} checkpoints x {c.diffusion_batch} tokens, "
                f"{c.steps if steps is None else steps} steps, lr {c.lr:g}, sampler {c.sampler}"
                f"{' ' + str(c.sampling_steps) if c.sampling_steps else ''}, "
                f"device {c.device if device is None else device}")

    # ------------------------------------------------------------------ setup
    def _state_kind_for(self, conditioned: bool, num_runs: int = 1) -> str:
        kind = self.config.permutation_state
        if kind == "auto":
            # One state per run when there are several runs (or tasks): measured on 5 runs x 10
            # checkpoints of an MLP outside the zoo, 57.8% vs 37.8% for one state per checkpoint
            # at 600 steps (README, "Generate, don't copy"). One run: a state per checkpoint.
            kind = "run" if conditioned or num_runs > 1 else "checkpoint"
        return kind

    def _runs_for_states(self, ckpts, runs: list) -> tuple[list, str | None]:
        """With ``permutation_state="auto"``, a one-run task grid whose task models share no
        starting point (no tensor correlates between two of them) gets a run (so a state) per
        task; with one state for all the generator cannot tell the tasks' basins apart and
        gives chance-level models for seen tasks too (docs/align.md). Fine-tunes of one model
        keep one run."""
        from paramgen.align.auto import SHARED_THRESHOLD, runs_per_task, shared_start

        if self.config.permutation_state != "auto" or len(set(runs)) > 1 or \
                getattr(ckpts, "conditions", None) is None:
            return runs, None
        shared = shared_start(ckpts)
        tasks = runs_per_task(ckpts)
        if shared is None or shared >= SHARED_THRESHOLD or tasks is None:
            return runs, None
        return tasks, (f"RPG: the task models share no starting point ({100 * shared:.0f}% of "
                       f"their values in tensors that correlate between tasks): one permutation "
                       f"state per task ({len(set(tasks))}); a task to generate takes the state "
                       "of the nearest seen task (pg.align first brings them into one basin)")

    def _build(self, tokenizer: Tokenizer, num_states: int, condition_dim: int | None) -> None:
        self.tokenizer = tokenizer
        self._condition_dim = condition_dim
        self._num_states = num_states
        self.network = RPGNetwork(self.config, tokenizer.positions, num_states, condition_dim)

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
        self._choose_preset(ckpts)
        cfg = self.config
        total = int(steps if steps is not None else cfg.steps)
        if total < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.collection_info = dict(getattr(ckpts, "info", None) or {})
        conditions = getattr(ckpts, "conditions", None)
        n = len(ckpts)
        runs = list(getattr(ckpts, "runs", None) or [0] * n)
        engine = self._engine()  # resolves the device first: a bad --device fails before work
        if progress and engine.process_index == 0:  # before a fit that may take an hour
            print(f"RPG settings ({self.preset}): {self.settings_summary(total, engine.device)}",
                  flush=True)
        runs, note = self._runs_for_states(ckpts, runs)
        if note and progress and engine.process_index == 0:
            print(note, flush=True)
        aligned = self.collection_info.get("aligned")
        self._independent_tasks = note is not None or (
            isinstance(aligned, dict) and aligned.get("runs") == "one per task")

        torch.manual_seed(seed)
        part = self._select_keys(ckpts)
        tokenizer = Tokenizer.fit(part, cfg.token_size, cfg.tokenization)
        L = tokenizer.num_tokens
        window = cfg.train_window if 0 < cfg.train_window < L else 0
        # [N, L, T]; large ones on disk when training is windowed (methods/rpg/token_store.py)
        fingerprint = Fingerprint()
        tokens = tokenize_collection(tokenizer, part, n, fingerprint, folder=workdir,
                                     to_file=goes_to_file(tokenizer, n, window))
        try:
            self._fit_on(tokens, fingerprint, tokenizer, engine, conditions, runs, window,
                         total, seed, workdir, progress, callback)
        finally:
            tokens.close()
        return self

    def _fit_on(self, tokens, fingerprint: Fingerprint, tokenizer: Tokenizer, engine,
                conditions, runs: list, window: int, total: int, seed: int, workdir,
                progress: bool, callback) -> None:
        cfg, n, L = self.config, tokens.shape[0], tokens.shape[1]
        kind = self._state_kind_for(conditions is not None, len(set(runs)))
        self._state_kind = kind
        if kind == "checkpoint":
            state_of = torch.arange(n)
            self._state_runs = list(runs)
        elif kind == "run":
            distinct = sorted(set(runs))
            state_of = torch.tensor([distinct.index(r) for r in runs])
            self._state_runs = distinct
        else:
            state_of = None
            self._state_runs = []
        num_states = 0 if state_of is None else int(state_of.max()) + 1
        cond = None if conditions is None else torch.as_tensor(conditions, dtype=torch.float32)
        self._build(tokenizer, num_states, None if cond is None else int(cond.shape[1]))
        self._record_conditions(cond)
        self._state_conditions = _conditions_of_states(state_of, cond)

        device = engine.device
        carry = None
        if window:
            if not self.network.backbone.streams:
                raise ValueError(f"train_window needs a backbone that carries its state "
                                 f"(mamba, lstm, none); {cfg.backbone!r} does not")
            carry = WindowCarry(self.network.backbone, n, L, window)
        fingerprint.add(cond)
        fingerprint.add(state_of)
        # Windowed training builds each window's mask from the valid counts, never [L, T].
        self._train = dict(tokens=tokens.to(device),
                           mask=None if window else tokenizer.mask.to(device),
                           valid=tokenizer.token_valid.to(device),
                           states=None if state_of is None else state_of.to(device),
                           conditions=None if cond is None else cond.to(device),
                           steps=total, window=window, carry=carry)
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
                      lr_scales={"position.": cfg.position_lr_scale})]

    def training_modules(self) -> dict[str, nn.Module]:
        modules = {"network": self.network}
        if self._train["carry"] is not None:
            modules["window_carry"] = self._train["carry"]
        return modules

    def training_loss(self, ctx: StepContext) -> Tensor:
        """Diffusion loss of a random subset of the tokens of a batch of checkpoints."""
        if self._train["window"]:
            return self._window_loss(ctx)
        cfg, data, net = self.config, self._train, self.network
        tokens = data["tokens"].tensor  # whole-sequence training keeps its tokens in memory
        n, L, T = tokens.shape
        batch = ctx.batch(n, cfg.batch_size).to(ctx.device)
        b = batch.numel()
        per_process = max(1, cfg.diffusion_batch // ctx.num_processes)
        picked = torch.randperm(b * L, generator=ctx.generator)[:min(per_process, b * L)]
        picked = picked.to(ctx.device)
        st = data["states"][batch] if data["states"] is not None else None
        cd = data["conditions"][batch] if data["conditions"] is not None else None
        x0 = tokens[batch].reshape(b * L, T)[picked]
        m = data["mask"].repeat(b, 1)[picked]
        with ctx.autocast():
            protos = net.prototypes(st, cd, b).reshape(b * L, T)[picked]
            return diffusion_loss(lambda xt, t: net.denoise(xt, t, protos), x0, m,
                                  self.schedule, cfg.prediction, generator=ctx.noise)

    def _window_loss(self, ctx: StepContext) -> Tensor:
        """The same loss on one window of W tokens per checkpoint (methods/rpg/window.py)."""
        cfg, data, net = self.config, self._train, self.network
        carry: WindowCarry = data["carry"]  # on the device: the engine moved training_modules
        tokens = data["tokens"]  # in memory or in a file (token_store.py): the same windows
        n, L, T = tokens.shape
        W = data["window"]
        chosen = torch.randperm(n, generator=ctx.generator)[:min(cfg.batch_size, n)]
        mine = ctx.shard(chosen).to(ctx.device)
        b = mine.numel()
        index, real = window_index(carry.starts(mine), W, L)             # [b, W]
        st = data["states"][mine] if data["states"] is not None else None
        cd = data["conditions"][mine] if data["conditions"] is not None else None
        per_process = max(1, cfg.diffusion_batch // ctx.num_processes)
        picked = torch.randperm(b * W, generator=ctx.generator)[:min(per_process, b * W)]
        picked = picked.to(ctx.device)
        x0 = tokens.windows(mine, index).reshape(b * W, T)[picked]
        m = (slot_mask(data["valid"][index], T) & real[..., None]).reshape(b * W, T)[picked]
        with ctx.autocast():
            h = net.window_input(st, cd, index)
            protos, after = net.backbone.forward_stateful(h, carry.gather(mine, h.dtype))
            protos = protos.reshape(b * W, T)[picked]
            loss = diffusion_loss(lambda xt, t: net.denoise(xt, t, protos), x0, m,
                                  self.schedule, cfg.prediction, generator=ctx.noise)
        self._advance_windows(ctx, carry, chosen.to(ctx.device), mine, after)
        return loss

    @torch.no_grad()
    def _advance_windows(self, ctx: StepContext, carry: WindowCarry, chosen: Tensor,
                         mine: Tensor, after: Any) -> None:
        """Every process stores the states of the whole global batch, so all banks agree."""
        if ctx.num_processes == 1:
            carry.update(mine, after)
            return
        from torch.utils._pytree import tree_flatten, tree_unflatten

        leaves, spec = tree_flatten(after)
        where = (mine[:, None] == chosen[None, :]).float()                 # [mine, chosen]
        count = ctx.reduce_sum(where.sum(0))
        full = []
        for leaf, axis in zip(leaves, carry._axes):
            moved = leaf.detach().float().movedim(axis, -1)                 # [..., mine]
            total = ctx.reduce_sum(moved @ where) / count.clamp_min(1)
            full.append(total.movedim(-1, axis))
        carry.update(chosen, tree_unflatten(full, spec))

    # ------------------------------------------------------------------ sampling
    def _require_fitted(self) -> None:
        if self.network is None or self.tokenizer is None:
            raise RuntimeError("this RPG generator is not trained: call fit() or from_pretrained()")

    def _autocast(self, device: torch.device):
        from paramgen.training import autocast_dtype

        dtype = autocast_dtype(self.config.autocast, device)
        return torch.autocast(device.type, dtype=dtype) if dtype is not None else \
            torch.autocast(device.type, enabled=False)

    def _pick_states(self, n: int, state: int | Sequence[int] | None,
                     gen: torch.Generator, cond: Tensor | None = None) -> Tensor | None:
        if self._num_states > 0:
            if state is None:
                nearest = self._states_nearest(cond)
                if nearest is None:  # every state is as near as any other: draw among all
                    return torch.randint(0, self._num_states, (n,), generator=gen)
                picks = torch.randint(0, 2 ** 62, (n,), generator=gen)
                return torch.tensor([int(c[int(p) % len(c)]) for c, p in zip(nearest, picks)])
            states = torch.as_tensor(state, dtype=torch.long).reshape(-1).expand(n).clone()
            if int(states.min()) < 0 or int(states.max()) >= self._num_states:
                raise ValueError(f"permutation state must be in [0, {self._num_states}), "
                                 f"got {state}")
            return states
        if state is not None:
            raise ValueError("this generator has no permutation states "
                             f"(permutation_state={self._state_kind!r})")
        return None

    def _states_nearest(self, cond: Tensor | None) -> list[Tensor] | None:
        """For each sample's condition, the states whose training conditions include the nearest
        one to it (L2), or None when that is every state for every sample (one run of tasks, or
        runs that all saw the same conditions). A task grid whose task models come from
        independent initialisations has a state per task: an unseen task takes the state of the
        seen task nearest to it, where a state drawn at random would mix two tasks' basins."""
        if cond is None or self._state_conditions is None:
            return None
        rows, owner = self._state_conditions
        dist = torch.cdist(cond.float().cpu(), rows,  # [n, R], exact: ties must stay ties
                           compute_mode="donot_use_mm_for_euclid_dist")
        best = torch.full((len(cond), self._num_states), float("inf"))
        best = best.scatter_reduce(1, owner.expand(len(cond), -1), dist, "amin")
        low = best.min(dim=1, keepdim=True).values
        near = best <= low + 1e-5 * (1 + low)
        if bool(near.all()):
            return None
        return [row.nonzero().flatten() for row in near]

    def _task_of_state(self, cond: Tensor | None, states: Tensor | None,
                       state_arg: Any) -> Tensor | None:
        """With ``unseen_task="auto"`` on a generator of independently initialised task models,
        every sample whose condition is not a training condition takes the condition of the
        seen task whose state it was given (the nearest one), and a warning says so: such a
        generator has nothing between its tasks to interpolate (docs/align.md)."""
        if (cond is None or states is None or state_arg is not None
                or not self._independent_tasks or self.config.unseen_task != "auto"
                or self._state_conditions is None):
            return cond
        rows, owner = self._state_conditions
        out, moved = cond.clone(), []
        for i in range(len(cond)):
            own = rows[owner == int(states[i])]
            given = cond[i].float().cpu()
            if len(own) == 0 or bool((own == given).all(dim=1).any()):
                continue  # a seen task, or a state without conditions: as given
            best = own[torch.cdist(given[None], own)[0].argmin()]
            out[i] = best.to(out.dtype).to(out.device)
            moved.append((given, best))
        if moved:
            def show(v: Tensor) -> str:  # task bits as a bit string, anything else as a list
                values = v.tolist()
                if all(x in (0.0, 1.0) for x in values):
                    return "".join(str(int(x)) for x in values)
                return "[" + ", ".join(f"{x:g}" for x in values) + "]"
            given, best = moved[0]
            notices.warn(
                f"condition {show(given)} is not one of the training tasks; this generator's "
                f"task models came from independent initialisations, which it cannot "
                f"interpolate, so it generates the nearest seen task's model ({show(best)})"
                + (f" ({len(moved)} of {len(cond)} samples)" if len(moved) > 1 else "")
                + "; unseen_task='given' feeds the given condition instead")
        return out

    @torch.no_grad()
    def prototypes(self, n: int, condition: Any = None, seed: int = 0,
                   state: int | Sequence[int] | None = None) -> Tensor:
        """The backbone's prototypes [n, L, T] for n models (one permutation state each)."""
        self._require_fitted()
        device = self.device
        net = self.network.to(device).eval()
        cond = self._conditions(condition, n, device)
        states = self._pick_states(n, state, torch.Generator().manual_seed(seed), cond)
        cond = self._task_of_state(cond, states, state)
        states = states.to(device) if states is not None else None
        with self._autocast(device):
            return net.prototypes(states, cond, n).float()

    def _token_blocks(self, n: int, condition: Any, seed: int, mode: str | None,
                      sampler: str | None, steps: int | None,
                      state: int | Sequence[int] | None, progress: bool
                      ) -> Iterator[tuple[list[int], int, Tensor]]:
        """Generate tokens block by block: yields (models, first token, tokens [k, c, T]).

        A backbone that carries state (mamba, lstm, none) runs one block of token positions at
        a time, so nothing of size L is ever held: sequential mode (one model, a few tokens at a
        time) samples a model of any size in constant memory. The transformer has no state to
        carry; its prototypes for the whole sequence are computed first.
        """
        from tqdm.auto import tqdm

        cfg = self.config
        mode = mode or cfg.sampling_mode
        if mode not in SAMPLING_MODES:
            raise ValueError(f"mode must be one of {SAMPLING_MODES}, got {mode!r}")
        sampler, steps = sampling_plan(cfg, sampler, steps)
        device = self.device
        net = self.network.to(device).eval()
        cond = self._conditions(condition, n, device)
        states = self._pick_states(n, state, torch.Generator().manual_seed(seed), cond)
        cond = self._task_of_state(cond, states, state)
        noise_gen = torch.Generator(device=device).manual_seed(seed + 1)
        L, T = self.tokenizer.num_tokens, self.tokenizer.token_size
        # sequential: one model at a time, a small block of tokens a call (one token a call
        # spent most of its time in per-call overhead); partial: all models together,
        # about partial_batch tokens a block; full: everything in one block.
        groups = [[i] for i in range(n)] if mode == "sequential" else [list(range(n))]
        width = {"sequential": min(SEQUENTIAL_BLOCK, cfg.partial_batch),
                 "partial": max(1, cfg.partial_batch // n), "full": L}[mode]
        backbone = net.backbone
        bar = tqdm(total=n * L, desc="rpg sample", disable=not progress, dynamic_ncols=True)
        for group in groups:
            idx = torch.tensor(group)
            st = states[idx].to(device) if states is not None else None
            cd = cond[idx.to(device)] if cond is not None else None
            k = len(group)
            if backbone.streams:
                carry = backbone.init_state(k, device)
            else:
                with self._autocast(device):
                    whole = net.prototypes(st, cd, k).float()
            for start in range(0, L, width):
                end = min(start + width, L)
                if backbone.streams:
                    # In pieces too: the scan's working memory grows with the tokens per call.
                    pieces = []
                    step = max(1, SAMPLING_PIECE // k)
                    for a in range(start, end, step):
                        with self._autocast(device):
                            out, carry = backbone.forward_stateful(
                                net.backbone_input(st, cd, k, a, min(a + step, end)), carry)
                        pieces.append(out.float())
                    protos = torch.cat(pieces, dim=1)
                else:
                    protos = whole[:, start:end]
                p = protos.reshape(k * (end - start), T)
                noise = torch.randn(p.shape, generator=noise_gen, device=device)
                with self._autocast(device):
                    x = run_sampler(lambda xt, t: _denoise_in_pieces(net, xt, t, p), noise,
                                    self.schedule, sampler, steps, cfg.prediction,
                                    generator=noise_gen)
                x = x.float().cpu().reshape(k, end - start, T)
                check_finite(x, "RPG sampling")
                yield group, start, x
                bar.update(p.shape[0])
        bar.close()

    @torch.no_grad()
    def _sample(self, n: int, *, seed: int = 0, progress: bool = False, condition: Any = None,
                mode: str | None = None, sampler: str | None = None, steps: int | None = None,
                state: int | Sequence[int] | None = None,
                return_tokens: bool = False) -> list[dict[str, Tensor]]:
        """Generate ``n`` state dicts.

        ``mode``: sequential (one model and a few tokens at a time: least memory), partial (about
        ``partial_batch`` tokens at a time, default) or full (all tokens of all n models at once).
        ``sampler``/``steps``: ddpm (all timesteps) or ddim with ``steps`` steps.
        ``state``: the permutation state to use (default: drawn at random per model).
        ``return_tokens``: give the raw tokens [n, L, T] instead of state dicts.
        """
        blocks = self._token_blocks(n, condition, seed, mode, sampler, steps, state, progress)
        tk = self.tokenizer
        if return_tokens:
            tokens = torch.empty(n, tk.num_tokens, tk.token_size)
            for group, start, x in blocks:
                tokens[group, start:start + x.shape[1]] = x
            return tokens
        builders = [StateDictBuilder(tk) for _ in range(n)]
        self._detokenize_blocks(blocks, builders)
        return [self._assemble(b.result()) for b in builders]

    def _detokenize_blocks(self, blocks, sinks: list) -> None:
        streams = [Detokenizer(self.tokenizer, sink) for sink in sinks]
        for group, _, x in blocks:
            for j, i in enumerate(group):
                streams[i].feed(x[j])
        for stream in streams:
            stream.close()

    @torch.no_grad()
    def _sample_to_files(self, paths: list, *, seed: int = 0, progress: bool = False,
                         metadata: dict[str, str] | None = None, condition: Any = None,
                         mode: str | None = None, sampler: str | None = None,
                         steps: int | None = None,
                         state: int | Sequence[int] | None = None) -> list[Path]:
        """Sample ``len(paths)`` models straight into ``.safetensors`` files.

        The values go to disk as they are generated: with ``mode="sequential"`` the memory used
        does not grow with the model's size (``benchmarks/memory_scaling.py`` measures it). Each
        file appears only when complete. A partial generator (``keys``) assembles each model
        with its copied tensors in memory first.
        """
        if self.reference:
            return super()._sample_to_files(paths, seed=seed, progress=progress,
                                            metadata=metadata, condition=condition, mode=mode,
                                            sampler=sampler, steps=steps, state=state)
        sinks = []
        try:
            for p in paths:
                sinks.append(SafetensorsSink(self.tokenizer, p, metadata))
            blocks = self._token_blocks(len(sinks), condition, seed, mode, sampler, steps,
                                        state, progress)
            self._detokenize_blocks(blocks, sinks)
            return [sink.close() for sink in sinks]
        except BaseException:
            for sink in sinks:
                sink.abort()
            raise

    # ------------------------------------------------------------------ files
    def _saved_config(self) -> dict:
        return {"num_states": self._num_states, "permutation_state": self._state_kind,
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
        self._build(tokenizer, int(config["num_states"]), config.get("condition_dim"))
        load_module(self.network, tensors, "network", where)
        # (generators saved before this was recorded draw states at random, as they did)
        rows, owner = tensors.get("state_conditions.rows"), tensors.get("state_conditions.state")
        self._state_conditions = None if rows is None or owner is None else \
            (rows.float(), owner.long())


def _conditions_of_states(state_of: Tensor | None, cond: Tensor | None
                          ) -> tuple[Tensor, Tensor] | None:
    """The distinct (state, condition) pairs of the training set: rows [R, C], states [R]."""
    if state_of is None or cond is None:
        return None
    pairs = torch.unique(torch.cat([state_of[:, None].float(), cond.float()], dim=1), dim=0)
    return pairs[:, 1:].contiguous(), pairs[:, 0].long().contiguous()


def _denoise_in_pieces(net: RPGNetwork, x: Tensor, t: Tensor, prototypes: Tensor) -> Tensor:
    """``net.denoise`` on ``SAMPLING_PIECE`` tokens at a time (each token is denoised on its own:
    the result is one call's, up to float rounding)."""
    if x.shape[0] <= SAMPLING_PIECE:
        return net.denoise(x, t, prototypes)
    return torch.cat([net.denoise(x[i:i + SAMPLING_PIECE], t[i:i + SAMPLING_PIECE],
                                  prototypes[i:i + SAMPLING_PIECE])
                      for i in range(0, x.shape[0], SAMPLING_PIECE)])
