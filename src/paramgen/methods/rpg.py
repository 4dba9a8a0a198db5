"""RPG: recurrent diffusion for large-scale parameter generation.

A recurrent backbone reads, for every token of a model, its position embedding plus a permutation
state (plus an optional task condition) and emits one prototype per token; a small 1D-conv
diffusion model shared by all tokens denoises each token conditioned on its prototype. Both train
together through the diffusion loss. At sampling time the backbone runs once, then the sampler
denoises the tokens: one at a time (``sequential``), ``partial_batch`` at a time (``partial``), or
all at once (``full``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from paramgen import io
from paramgen.backbones import build as build_backbone
from paramgen.diffusion import Denoiser1D, NoiseSchedule, diffusion_loss
from paramgen.diffusion import sample as run_sampler
from paramgen.embeddings import ConditionEncoder, PositionEmbedding
from paramgen.methods.base import (FORMAT, FORMAT_VERSION, Generator, read_config,
                                   resolve_config)
from paramgen.methods.presets import RPG_PRESETS
from paramgen.tokenize import (Detokenizer, SafetensorsSink, StateDictBuilder,
                                Tokenizer)

SAMPLING_MODES = ("sequential", "partial", "full")
PERMUTATION_STATES = ("auto", "checkpoint", "run", "none")


@dataclass
class RPGConfig:
    """Every setting of an RPG generator. Presets (``RPG_PRESETS``) are named sets of these."""

    # tokenization
    token_size: int = 256
    tokenization: str = "layer"            # layer | flat | channel
    # embeddings
    position_embedding: str = "2d"         # 2d | 1d | learnable
    permutation_state: str = "auto"        # checkpoint | run | none | auto (run when conditioned)
    # recurrent backbone
    backbone: str = "mamba"                # mamba | lstm | transformer | none (no recurrence)
    d_model: tuple[int, int] = (256, 256)
    num_layers: int = 2
    d_state: int = 32
    d_conv: int = 4
    expand: int = 2
    # diffusion
    denoiser_channels: tuple[int, ...] = (1, 32, 64, 128)
    kernel_size: int = 7
    num_train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 2e-2
    prediction: str = "epsilon"            # epsilon | sample
    # With sample prediction, the prototype itself is the first guess of the clean token and the
    # denoiser learns a correction (added to its last feature map, the output).
    prototype_skip: bool = False
    sampler: str = "ddpm"                  # ddpm | ddim
    sampling_steps: int | None = None      # None: all timesteps (ddpm)
    sampling_mode: str = "partial"         # sequential | partial | full
    partial_batch: int = 256
    # training
    steps: int = 80_000
    lr: float = 3e-5
    min_lr_ratio: float = 1.0              # cosine decay to lr * ratio; 1.0 keeps lr constant
    warmup_steps: int = 0
    weight_decay: float = 1e-5
    batch_size: int = 16
    diffusion_batch: int = 1024
    grad_clip: float = 1.0
    autocast: str = "auto"                 # auto (bf16 on CUDA) | bf16 | off
    save_every: int = 500
    device: str = "auto"

    def __post_init__(self) -> None:
        self.d_model = tuple(self.d_model) if isinstance(self.d_model, (list, tuple)) else (
            int(self.d_model), int(self.d_model))
        self.denoiser_channels = tuple(self.denoiser_channels)
        checks = [("tokenization", ("layer", "flat", "channel")),
                  ("position_embedding", ("2d", "1d", "learnable")),
                  ("permutation_state", PERMUTATION_STATES),
                  ("prediction", ("epsilon", "sample")),
                  ("sampler", ("ddpm", "ddim")),
                  ("sampling_mode", SAMPLING_MODES),
                  ("autocast", ("auto", "bf16", "off"))]
        for name, allowed in checks:
            if getattr(self, name) not in allowed:
                raise ValueError(f"RPGConfig.{name} must be one of {allowed}, "
                                 f"got {getattr(self, name)!r}")
        if self.prototype_skip and self.prediction != "sample":
            raise ValueError("RPGConfig.prototype_skip needs prediction='sample': the prototype "
                             "is a guess of the clean token, not of the noise")
        for name in ("token_size", "steps", "batch_size", "diffusion_batch", "partial_batch"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"RPGConfig.{name} must be a positive integer, "
                                 f"got {getattr(self, name)!r}")

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "RPGConfig":
        if name not in RPG_PRESETS:
            raise ValueError(f"unknown RPG preset {name!r}; known: {sorted(RPG_PRESETS)}")
        values = {**RPG_PRESETS[name], **overrides}
        return cls.from_dict(values)

    @classmethod
    def from_dict(cls, values: dict) -> "RPGConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown RPG config keys {unknown}; known: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["d_model"] = list(self.d_model)
        d["denoiser_channels"] = list(self.denoiser_channels)
        return d


class RPGNetwork(nn.Module):
    """Position + permutation state + condition -> backbone -> prototypes; and the denoiser."""

    def __init__(self, config: RPGConfig, positions: Tensor, num_states: int,
                 condition_dim: int | None):
        super().__init__()
        dim = config.d_model[0]
        self.prototype_skip = config.prototype_skip
        self.position = PositionEmbedding(positions, dim, config.position_embedding)
        self.states = nn.Embedding(num_states, dim) if num_states > 0 else None
        if self.states is not None:
            nn.init.normal_(self.states.weight, std=0.5)
        self.condition = ConditionEncoder(condition_dim, dim) if condition_dim else None
        self.backbone = build_backbone(
            config.backbone, d_in=dim, d_model=config.d_model, d_out=config.token_size,
            num_layers=config.num_layers, d_state=config.d_state, d_conv=config.d_conv,
            expand=config.expand)
        self.denoiser = Denoiser1D(config.token_size, config.denoiser_channels,
                                   config.kernel_size, cond_dim=config.token_size)

    def denoise(self, x_t: Tensor, t: Tensor, prototypes: Tensor) -> Tensor:
        out = self.denoiser(x_t, t, prototypes)
        return out + prototypes if self.prototype_skip else out

    def backbone_input(self, states: Tensor | None, conditions: Tensor | None,
                       batch: int, start: int = 0, end: int | None = None) -> Tensor:
        """What the backbone reads for tokens ``start:end`` (default all) of ``batch`` models."""
        pos = self.position() if start == 0 and end is None else self.position.rows(start, end)
        h = pos.unsqueeze(0).expand(batch, -1, -1)
        if self.states is not None and states is not None:
            h = h + self.states(states).unsqueeze(1)
        if self.condition is not None and conditions is not None:
            h = h + self.condition(conditions).unsqueeze(1)
        return h

    def prototypes(self, states: Tensor | None, conditions: Tensor | None,
                   batch: int) -> Tensor:
        return self.backbone(self.backbone_input(states, conditions, batch))


def _data_fingerprint(tokens: Tensor, conditions: Tensor | None) -> str:
    h = hashlib.sha256()
    h.update(str(tuple(tokens.shape)).encode())
    h.update(tokens[:, :, :8].contiguous().numpy().tobytes())
    if conditions is not None:
        h.update(conditions.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class RPG(Generator):
    """Recurrent diffusion parameter generator. ``RPG(preset="tiny")`` or ``RPG(config=...)``.

    ``RPG()`` with neither lets :meth:`fit` choose: preset ``cpu``, or ``cpu-tasks`` when the
    collection has conditions (keyword overrides apply on top of either).
    """

    method = "rpg"

    def __init__(self, preset: str | None = None, config: RPGConfig | dict | None = None,
                 **overrides: Any):
        # With neither preset nor config, fit() picks: ``cpu``, or ``cpu-tasks`` for a
        # collection with conditions (a task grid), as `paramgen train` does.
        self._auto_preset = (preset is None and config is None, dict(overrides))
        config = resolve_config(RPGConfig, preset, config, overrides)
        self.config: RPGConfig = config
        self.preset = preset
        self.tokenizer: Tokenizer | None = None
        self.network: RPGNetwork | None = None
        self.schedule = NoiseSchedule(config.num_train_timesteps, config.beta_start,
                                      config.beta_end)
        self._condition_dim: int | None = None
        self._state_kind = "none"
        self._num_states = 0
        self._state_runs: list[int] = []
        self.history: list[dict] = []
        # What the training collection was (arch, data, ...), so samples can be evaluated later.
        self.collection_info: dict = {}

    # ------------------------------------------------------------------ setup
    def _state_kind_for(self, conditioned: bool) -> str:
        kind = self.config.permutation_state
        if kind == "auto":
            kind = "run" if conditioned else "checkpoint"
        return kind

    def _build(self, tokenizer: Tokenizer, num_states: int, condition_dim: int | None) -> None:
        self.tokenizer = tokenizer
        self._condition_dim = condition_dim
        self._num_states = num_states
        self.network = RPGNetwork(self.config, tokenizer.positions, num_states, condition_dim)

    @property
    def device(self) -> torch.device:
        return _resolve_device(self.config.device)

    def _autocast(self, device: torch.device):
        mode = self.config.autocast
        if mode == "bf16" or (mode == "auto" and device.type == "cuda"):
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return torch.autocast(device.type, enabled=False)

    def _lr_at(self, step: int, total: int) -> float:
        cfg = self.config
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return cfg.lr * (step + 1) / cfg.warmup_steps
        span = max(total - cfg.warmup_steps, 1)
        progress = min(max(step - cfg.warmup_steps, 0) / span, 1.0)
        ratio = cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        return cfg.lr * ratio

    # ------------------------------------------------------------------ training
    def fit(self, ckpts, steps: int | None = None, seed: int = 0,
            workdir: str | os.PathLike | None = None, progress: bool = True,
            callback=None) -> "RPG":
        """Train on a CheckpointSet (or any sequence of state dicts).

        With ``workdir`` the training state is saved every ``save_every`` steps and a later call
        with the same workdir and data continues from the last save.
        """
        from tqdm.auto import tqdm

        conditions = getattr(ckpts, "conditions", None)
        auto, overrides = self._auto_preset
        if auto:
            self.preset = "cpu-tasks" if conditions is not None else "cpu"
            self.config = RPGConfig.from_preset(self.preset, **overrides)
            self.schedule = NoiseSchedule(self.config.num_train_timesteps,
                                          self.config.beta_start, self.config.beta_end)
        cfg = self.config
        total = int(steps if steps is not None else cfg.steps)
        if total < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        n = len(ckpts)
        if n == 0:
            raise ValueError("cannot fit RPG on an empty checkpoint collection")
        self.collection_info = dict(getattr(ckpts, "info", None) or {})
        runs = list(getattr(ckpts, "runs", [0] * n))
        device = self.device

        torch.manual_seed(seed)
        tokenizer = Tokenizer.fit(ckpts, cfg.token_size, cfg.tokenization)
        tokens = torch.stack([tokenizer.tokenize(sd) for sd in ckpts])        # [N, L, T]
        kind = self._state_kind_for(conditions is not None)
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
        cond_dim = None if conditions is None else int(conditions.shape[1])
        self._build(tokenizer, num_states, cond_dim)
        net = self.network.to(device)
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        gen = torch.Generator().manual_seed(seed)
        # Noise and timesteps come from their own generator on the training device, so a resumed
        # run draws exactly what an uninterrupted one would.
        noise_gen = torch.Generator(device=device).manual_seed(seed + 1)

        start = 0
        state_path = Path(workdir) / "train_state.pt" if workdir is not None else None
        fingerprint = _data_fingerprint(tokens, conditions)
        if state_path is not None and state_path.is_file():
            saved = torch.load(state_path, weights_only=False, map_location="cpu")
            if saved.get("fingerprint") != fingerprint or saved.get("config") != cfg.to_dict():
                raise ValueError(f"{state_path} was saved for other data or another config; "
                                 "use a new workdir or delete that file to start over")
            net.load_state_dict(saved["network"])
            opt.load_state_dict(saved["optimizer"])
            gen.set_state(saved["rng"])
            noise_gen.set_state(saved["noise_rng"])
            start = int(saved["step"])
            self.history = list(saved.get("history", []))

        mask = tokenizer.mask.to(device)
        tokens_dev = tokens.to(device)
        cond_dev = conditions.to(device) if conditions is not None else None
        L, T = tokenizer.num_tokens, tokenizer.token_size
        bar = tqdm(total=total, initial=start, desc="rpg fit", disable=not progress,
                   dynamic_ncols=True)
        net.train()
        ema_loss = None
        t0 = time.time()
        for step in range(start, total):
            for group in opt.param_groups:
                group["lr"] = self._lr_at(step, total)
            b = min(cfg.batch_size, n)
            batch = torch.randperm(n, generator=gen)[:b]
            st = state_of[batch].to(device) if state_of is not None else None
            cd = cond_dev[batch.to(device)] if cond_dev is not None else None
            pick_n = min(cfg.diffusion_batch, b * L)
            picked = torch.randperm(b * L, generator=gen)[:pick_n]
            x0 = tokens_dev[batch.to(device)].reshape(b * L, T)[picked.to(device)]
            m = mask.repeat(b, 1)[picked.to(device)]
            with self._autocast(device):
                protos = net.prototypes(st, cd, b).reshape(b * L, T)[picked.to(device)]
                loss = diffusion_loss(lambda xt, t: net.denoise(xt, t, protos), x0, m,
                                      self.schedule, cfg.prediction, generator=noise_gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            opt.step()
            value = float(loss.detach())
            ema_loss = value if ema_loss is None else 0.98 * ema_loss + 0.02 * value
            bar.update(1)
            if step % 10 == 0 or step == total - 1:
                bar.set_postfix(loss=f"{ema_loss:.4f}")
                self.history.append({"step": step + 1, "loss": ema_loss})
            if callback is not None:
                callback(step + 1, ema_loss)
            done = step + 1
            if state_path is not None and (done % cfg.save_every == 0 or done == total):
                io.save_torch(state_path, {
                    "fingerprint": fingerprint, "config": cfg.to_dict(), "step": done,
                    "network": net.state_dict(), "optimizer": opt.state_dict(),
                    "rng": gen.get_state(), "noise_rng": noise_gen.get_state(),
                    "history": self.history})
        bar.close()
        self.train_seconds = time.time() - t0
        net.eval()
        return self

    # ------------------------------------------------------------------ sampling
    def _require_fitted(self) -> None:
        if self.network is None or self.tokenizer is None:
            raise RuntimeError("this RPG generator is not trained: call fit() or from_pretrained()")

    def _pick_states(self, n: int, state: int | Sequence[int] | None,
                     gen: torch.Generator) -> Tensor | None:
        if self._num_states > 0:
            if state is None:
                return torch.randint(0, self._num_states, (n,), generator=gen)
            states = torch.as_tensor(state, dtype=torch.long).reshape(-1).expand(n).clone()
            if int(states.min()) < 0 or int(states.max()) >= self._num_states:
                raise ValueError(f"permutation state must be in [0, {self._num_states}), "
                                 f"got {state}")
            return states
        if state is not None:
            raise ValueError("this generator has no permutation states "
                             f"(permutation_state={self._state_kind!r})")
        return None

    @torch.no_grad()
    def prototypes(self, n: int, condition: Any = None, seed: int = 0,
                   state: int | Sequence[int] | None = None) -> Tensor:
        """The backbone's prototypes [n, L, T] for n models (one permutation state each)."""
        self._require_fitted()
        device = self.device
        net = self.network.to(device).eval()
        cond = self._conditions(condition, n, device)
        states = self._pick_states(n, state, torch.Generator().manual_seed(seed))
        states = states.to(device) if states is not None else None
        with self._autocast(device):
            return net.prototypes(states, cond, n).float()

    def _token_blocks(self, n: int, condition: Any, seed: int, mode: str | None,
                      sampler: str | None, steps: int | None,
                      state: int | Sequence[int] | None, progress: bool
                      ) -> Iterator[tuple[list[int], int, Tensor]]:
        """Generate tokens block by block: yields (models, first token, tokens [k, c, T]).

        A backbone that carries state (mamba, lstm, none) runs one block of token positions at
        a time, so nothing of size L is ever held: sequential mode (one model, one token at a
        time) samples a model of any size in constant memory. The transformer has no state to
        carry; its prototypes for the whole sequence are computed first.
        """
        from tqdm.auto import tqdm

        self._require_fitted()
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        cfg = self.config
        mode = mode or cfg.sampling_mode
        if mode not in SAMPLING_MODES:
            raise ValueError(f"mode must be one of {SAMPLING_MODES}, got {mode!r}")
        sampler = sampler or cfg.sampler
        if steps is None:
            steps = cfg.sampling_steps if sampler == cfg.sampler else None
        if sampler == "ddim" and steps is None:
            steps = 60
        device = self.device
        net = self.network.to(device).eval()
        cond = self._conditions(condition, n, device)
        states = self._pick_states(n, state, torch.Generator().manual_seed(seed))
        noise_gen = torch.Generator(device=device).manual_seed(seed + 1)
        L, T = self.tokenizer.num_tokens, self.tokenizer.token_size
        # sequential: one model at a time, one token at a time; partial: all models together,
        # about partial_batch tokens a block; full: everything in one block.
        groups = [[i] for i in range(n)] if mode == "sequential" else [list(range(n))]
        width = {"sequential": 1, "partial": max(1, cfg.partial_batch // n), "full": L}[mode]
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
                    with self._autocast(device):
                        protos, carry = backbone.forward_stateful(
                            net.backbone_input(st, cd, k, start, end), carry)
                    protos = protos.float()
                else:
                    protos = whole[:, start:end]
                p = protos.reshape(k * (end - start), T)
                noise = torch.randn(p.shape, generator=noise_gen, device=device)
                with self._autocast(device):
                    x = run_sampler(lambda xt, t: net.denoise(xt, t, p), noise, self.schedule,
                                    sampler, steps, cfg.prediction, generator=noise_gen)
                yield group, start, x.float().cpu().reshape(k, end - start, T)
                bar.update(p.shape[0])
        bar.close()

    @torch.no_grad()
    def sample(self, n: int = 1, condition: Any = None, seed: int = 0, mode: str | None = None,
               sampler: str | None = None, steps: int | None = None,
               state: int | Sequence[int] | None = None, progress: bool = False,
               return_tokens: bool = False) -> list[dict[str, Tensor]]:
        """Generate ``n`` state dicts.

        ``mode``: sequential (one model and one token at a time: least memory), partial (about
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
        return [b.result() for b in builders]

    def _detokenize_blocks(self, blocks, sinks: list) -> None:
        streams = [Detokenizer(self.tokenizer, sink) for sink in sinks]
        for group, _, x in blocks:
            for j, i in enumerate(group):
                streams[i].feed(x[j])
        for stream in streams:
            stream.close()

    @torch.no_grad()
    def sample_to_files(self, paths: Sequence[str | os.PathLike], condition: Any = None,
                        seed: int = 0, mode: str | None = None, sampler: str | None = None,
                        steps: int | None = None, state: int | Sequence[int] | None = None,
                        progress: bool = False,
                        metadata: dict[str, str] | None = None) -> list[Path]:
        """Sample ``len(paths)`` models straight into ``.safetensors`` files.

        The values go to disk as they are generated: with ``mode="sequential"`` the memory used
        does not grow with the model's size (a 10M-parameter model costs no more than a 10K one;
        ``benchmarks/memory_scaling.py`` measures it). Each file appears only when complete.
        """
        self._require_fitted()
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
    def save_pretrained(self, path: str | os.PathLike) -> Path:
        self._require_fitted()
        path = Path(path)
        config = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "method": self.method,
            "preset": self.preset, "config": self.config.to_dict(),
            "condition_dim": self._condition_dim, "num_states": self._num_states,
            "permutation_state": self._state_kind, "state_runs": self._state_runs,
            "tokenizer": self.tokenizer.to_config(),
            "collection_info": self.collection_info,
        }
        tensors = {f"network.{k}": v for k, v in self.network.state_dict().items()}
        tensors.update(self.tokenizer.copied_tensors())
        io.save_safetensors(path / "model.safetensors", tensors)
        io.write_json(path / "config.json", config)
        return path

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> "RPG":
        path = Path(path)
        config = read_config(path, cls.method)
        weights = path / "model.safetensors"
        if not weights.is_file():
            raise FileNotFoundError(f"{weights} not found beside {path / 'config.json'}")
        tensors = load_file(str(weights))
        gen = cls(config=RPGConfig.from_dict(config["config"]))
        gen.preset = config.get("preset")
        tokenizer = Tokenizer.from_config(config["tokenizer"], tensors)
        gen._state_kind = config["permutation_state"]
        gen._state_runs = config.get("state_runs", [])
        gen.collection_info = dict(config.get("collection_info") or {})
        gen._build(tokenizer, int(config["num_states"]), config["condition_dim"])
        net_sd = {k[len("network."):]: v for k, v in tensors.items() if k.startswith("network.")}
        missing, unexpected = gen.network.load_state_dict(net_sd, strict=False)
        if missing or unexpected:
            raise ValueError(f"{weights} does not match its config: missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]}")
        gen.network.eval()
        return gen
