"""IGPG: one instruction-guided generator for a zoo of architectures and datasets.

``IGPG().fit([ckpts_a, ckpts_b, ...])`` learns, over collections of different architectures and
datasets, (1) a Gumbel VQ-VAE that turns fixed-size chunks of every model's normalised parameters
into codebook tokens and (2) a GPT prior over each model's token sequence, conditioned on an
embedding of the architecture's description and one of the dataset. ``sample(n, like=...,
dataset=...)`` asks the prior for the tokens of ``like``'s layout on that dataset, decodes them
chunk by chunk and returns state dicts with exactly ``like``'s keys, shapes and dtypes.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn

from paramgen import text as text_encoder
from paramgen.methods.base import Generator
from paramgen.methods.fingerprint import data_fingerprint
from paramgen.methods.folder import load_module
from paramgen.methods.igpg.chunking import (check_single_dtype, chunk_slots, chunk_tensor,
                                            fit_chunker, layout_signature)
from paramgen.methods.igpg.config import IGPGConfig
from paramgen.methods.igpg.coordinates import (CoordinateStats, fit_coordinates,
                                               infer_basins, standardise_collection)
from paramgen.methods.igpg.describe import (dataset_name, dataset_text, describe_architecture,
                                            generated_layout)
from paramgen.methods.igpg.inputs import as_state_dict as _as_state_dict
from paramgen.methods.igpg.inputs import canon_dataset as _canon_dataset
from paramgen.methods.igpg.options import OPTIONS
from paramgen.methods.igpg.prior import GPTPrior
from paramgen.methods.igpg.transfer import borrow
from paramgen.methods.igpg.vqvae import CONTEXT_DROP, GumbelVQVAE
from paramgen.methods.registry import register_method
from paramgen.notices import progress_bar
from paramgen.tokenize import Detokenizer, SafetensorsSink, StateDictBuilder, Tokenizer
from paramgen.training import Stage, StepContext

TEXT_DIM = 384    # all-MiniLM-L6-v2


@dataclass
class ZooEntry:
    """What the generator keeps of one training collection (one architecture on one dataset)."""

    signature: str
    dataset: str | None
    arch_text: str
    tokenizer: Tokenizer
    size: int
    info: dict = field(default_factory=dict)
    position_offset: int = 0     # its chunks' ids in the VQ-VAE's position table
    coords: CoordinateStats | None = None   # per-coordinate statistics of its groups


@dataclass
class Target:
    """How to sample one layout: its chunker and description, the VQ-VAE position ids of its
    chunks (None: position-free) and the coordinate statistics its samples are decoded with."""

    tokenizer: Tokenizer
    arch_text: str
    dataset: str | None
    kind: str                      # "seen", "unseen-pair" or "unseen-arch"
    position_ids: Tensor | None
    coords: CoordinateStats | None


@register_method("igpg")
class IGPG(Generator):
    """Instruction-guided parameter generation: ``IGPG(preset="cpu")`` (default),
    ``"tiny"`` (tests) or ``"paper"``; or ``config=IGPGConfig(...)``; keyword overrides apply."""

    config_cls = IGPGConfig
    options = OPTIONS
    config: IGPGConfig

    def __init__(self, preset: str | None = None, config: IGPGConfig | dict | None = None,
                 **overrides: Any):
        super().__init__(preset, config, **overrides)
        self.zoo: list[ZooEntry] = []
        self.vqvae: GumbelVQVAE | None = None
        self.prior: GPTPrior | None = None
        self.dataset_conditioned = False
        self.context = 0
        self._texts: dict[str, Tensor] = {}
        self.timings: dict[str, float] = {}
        self._train: dict | None = None

    # ------------------------------------------------------------------ helpers
    @property
    def fitted(self) -> bool:
        """Whether the generator is trained (by ``fit`` or loaded) and can sample."""
        return self.vqvae is not None and self.prior is not None

    @property
    def datasets(self) -> list[str]:
        """The dataset texts the generator was trained on."""
        return sorted({e.dataset for e in self.zoo if e.dataset is not None})

    def _embed(self, texts: Sequence[str]) -> Tensor:
        missing = [t for t in dict.fromkeys(texts) if t not in self._texts]
        if missing:
            for t, v in zip(missing, text_encoder.encode(missing)):
                self._texts[t] = v.float().cpu()
        return torch.stack([self._texts[t] for t in texts])

    def _build_networks(self, cond_dim: int) -> None:
        cfg = self.config
        positions = sum(e.tokenizer.num_tokens for e in self.zoo)
        self.vqvae = GumbelVQVAE(cfg.chunk_size, cfg.tokens_per_chunk, cfg.codebook_size,
                                 cfg.code_dim, cfg.vq_hidden, positions, cond_dim)
        self.prior = GPTPrior(cfg.codebook_size, cfg.prior_dim, cfg.prior_layers,
                              cfg.prior_heads, self.context, cond_dim, self.dataset_conditioned,
                              cfg.dropout)

    # ------------------------------------------------------------------ training
    @staticmethod
    def _collections(collections: Any) -> list:
        from paramgen.checkpoints import CheckpointSet

        items = [collections] if isinstance(collections, CheckpointSet) else list(collections)
        if not items:
            raise ValueError("IGPG.fit needs at least one CheckpointSet")
        for i, c in enumerate(items):
            if not isinstance(c, CheckpointSet):
                raise ValueError(f"collections[{i}] is a {type(c).__name__}, not a CheckpointSet "
                                 "(build one with pg.CheckpointSet.from_state_dicts(..., "
                                 "info={'dataset': ...}))")
            if len(c) == 0:
                raise ValueError(f"collections[{i}] is empty")
        return items

    def _fit(self, collections, *, steps: int | None = None, seed: int = 0,
             workdir: str | os.PathLike | None = None, progress: bool = True,
             callback: Callable[[int, float], None] | None = None) -> "IGPG":
        """Train on one CheckpointSet or a list of them (any mix of architectures and datasets;
        a set's dataset text is ``info["dataset"]``, else its ``info["data"]``).

        Two stages of the training engine: the VQ-VAE on every chunk of every model, then the
        prior on every model's token sequence. ``steps`` sets the steps of each stage (default:
        the config's ``vq_steps`` and ``prior_steps``). With ``workdir`` the training state is
        saved periodically and a later call with the same data and settings resumes.
        """
        cfg = self.config
        items = self._collections(collections)
        vq_steps = int(steps if steps is not None else cfg.vq_steps)
        prior_steps = int(steps if steps is not None else cfg.prior_steps)
        if min(vq_steps, prior_steps) < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        engine = self._engine()
        torch.manual_seed(seed)
        t_start = time.time()

        # 1. chunk every collection; describe its architecture and dataset
        self.zoo, chunk_sets, group_runs = [], [], []
        for i, ckpts in enumerate(items):
            info = ckpts.info
            where = f"collection {i} ({info.get('arch', '?')} on {dataset_name(info) or '?'})"
            first = ckpts[0]
            check_single_dtype(first, where)
            tokenizer = fit_chunker(ckpts, cfg.chunk_size, cfg.vectorization)
            if tokenizer.num_tokens == 0:
                raise ValueError(f"{where} has no floating tensors to generate")
            chunks = chunk_tensor(tokenizer, ckpts)
            runs = ckpts.runs if cfg.coordinates == "run" else [0] * len(ckpts)
            if cfg.coordinates == "run" and len(set(runs)) == 1:
                runs = infer_basins(chunks, tokenizer.mask) or runs
            coords = (fit_coordinates(chunks, tokenizer.mask, runs)
                      if cfg.coordinates != "off" else None)
            arch_text = describe_architecture(generated_layout(first), info.get("architecture"))
            offset = sum(e.tokenizer.num_tokens for e in self.zoo)
            self.zoo.append(ZooEntry(layout_signature(first), dataset_name(info), arch_text,
                                     tokenizer, len(ckpts), dict(info), offset, coords))
            chunk_sets.append(standardise_collection(chunks, coords, runs))
            group_runs.append(runs)
        self.collection_info = {"zoo": [{"arch": e.info.get("arch"), "dataset": e.dataset,
                                         "checkpoints": e.size} for e in self.zoo]}
        named = [e.dataset is not None for e in self.zoo]
        mode = cfg.dataset_condition
        self.dataset_conditioned = mode == "on" or (mode == "auto" and any(named))
        if self.dataset_conditioned and not all(named):
            i = named.index(False)
            raise ValueError(f"collection {i} names no dataset (info['dataset'] or info['data']) "
                             "while others do: give every collection one, or pass "
                             "dataset_condition='off'")
        l = cfg.tokens_per_chunk
        lengths = [e.tokenizer.num_tokens * l for e in self.zoo]
        # Sequences longer than the context are trained as random windows of it and sampled
        # window by window (Algorithm 1); a window must hold two chunks' tokens.
        self.context = int(cfg.context or max(lengths))
        if self.context < 2 * l:
            raise ValueError(f"context={self.context} is less than two chunks of "
                             f"tokens_per_chunk={l} tokens: raise context=")
        arch_emb = self._embed([e.arch_text for e in self.zoo])
        data_emb = (self._embed([dataset_text(e.dataset) for e in self.zoo])
                    if self.dataset_conditioned else None)
        self._build_networks(arch_emb.shape[1])

        # 2. what the two stages read: every chunk with its context; later, every sequence
        device = engine.device
        self._train = dict(
            vq_steps=vq_steps, prior_steps=prior_steps, chunk_sets=chunk_sets, runs=group_runs,
            x=torch.cat([c.reshape(-1, cfg.chunk_size) for c in chunk_sets]).to(device),
            mask=torch.cat([e.tokenizer.mask.repeat(c.shape[0], 1)
                            for e, c in zip(self.zoo, chunk_sets)]).to(device),
            owner=torch.cat([torch.full((c.shape[0] * c.shape[1],), i)
                             for i, c in enumerate(chunk_sets)]).to(device),
            pos=torch.cat([e.tokenizer.positions.repeat(c.shape[0], 1)
                           for e, c in zip(self.zoo, chunk_sets)]).to(device),
            pid=torch.cat([(e.position_offset + torch.arange(c.shape[1])).repeat(c.shape[0])
                           for e, c in zip(self.zoo, chunk_sets)]).to(device),
            arch=arch_emb.to(device),
            data=data_emb.to(device) if data_emb is not None else None,
            slots=[chunk_slots(e.tokenizer, l).to(device) for e in self.zoo],
            models=[(i, j) for i, c in enumerate(chunk_sets) for j in range(c.shape[0])],
            seqs=None, t0=time.time())
        try:
            self._run_engine(engine, seed=seed, workdir=workdir, progress=progress,
                             callback=callback,
                             data_fingerprint=data_fingerprint(*chunk_sets, arch_emb, data_emb))
        finally:
            self._train = None
        self.timings["prior_s"] = time.time() - self.timings.pop("_prior_start", time.time())
        self.timings["fit_s"] = time.time() - t_start
        self.vqvae.eval()
        self.prior.eval()
        return self

    def training_stages(self) -> list[Stage]:
        cfg, t = self.config, self._train
        common = dict(schedule="linear", min_lr_ratio=cfg.min_lr_ratio,
                      warmup_steps=cfg.warmup_steps, grad_clip=cfg.grad_clip)
        return [Stage("vqvae", t["vq_steps"], self.vqvae, lr=cfg.vq_lr, weight_decay=0.0,
                      **common),
                Stage("prior", t["prior_steps"], self.prior, lr=cfg.prior_lr,
                      weight_decay=cfg.weight_decay, **common)]

    def training_modules(self) -> dict[str, nn.Module]:
        return {"vqvae": self.vqvae, "prior": self.prior}

    def on_stage_end(self, stage: Stage) -> None:
        # The VQ-VAE is frozen once its stage ends: every model becomes a token sequence once.
        if stage.name == "vqvae":
            self.timings["vqvae_s"] = time.time() - self._train["t0"]
            self.timings["_prior_start"] = time.time()
            self._train["seqs"] = self._sequences()

    @torch.no_grad()
    def _sequences(self) -> list[Tensor]:
        """Every model's token sequence (the VQ-VAE frozen), and each collection's residual
        statistics: what the VQ-VAE's reconstruction misses, per coordinate and group."""
        t, vq, l = self._train, self.vqvae.eval(), self.config.tokens_per_chunk
        seqs = self._token_sequences()
        for i, (e, c) in enumerate(zip(self.zoo, t["chunk_sets"])):
            if e.coords is not None:
                ctx = self._chunk_context(t["arch"][i:i + 1], e.tokenizer, self._ids(e))
                dec = torch.stack([vq.decode(seqs[i][j].view(-1, l), ctx).float().cpu()
                                   for j in range(c.shape[0])])
                e.coords.fit_residual(c, dec, t["runs"][i])
        return seqs

    @torch.no_grad()
    def _token_sequences(self) -> list[Tensor]:
        t, vq = self._train, self.vqvae.eval()
        seqs = []
        for i, (e, c) in enumerate(zip(self.zoo, t["chunk_sets"])):
            ctx = self._chunk_context(t["arch"][i:i + 1], e.tokenizer, self._ids(e))
            mask = e.tokenizer.mask.to(ctx.device)
            seqs.append(torch.cat([vq.tokenize(c[j].to(ctx.device), mask, ctx).reshape(1, -1)
                                   for j in range(c.shape[0])]))
        return seqs

    def training_loss(self, ctx: StepContext) -> Tensor:
        cfg, t = self.config, self._train
        if ctx.stage.name == "vqvae":
            k = ctx.stage_step
            tau = cfg.tau_start * (cfg.tau_end / cfg.tau_start) ** (
                k / max(t["vq_steps"] - 1, 1))
            idx = ctx.batch(t["x"].shape[0], cfg.vq_batch).to(ctx.device)
            with ctx.autocast():
                c = self.vqvae.context(t["arch"][t["owner"][idx]], t["pos"][idx], t["pid"][idx],
                                       drop=CONTEXT_DROP, generator=ctx.noise)
                loss, _ = self.vqvae.loss(t["x"][idx], t["mask"][idx], c, tau, cfg.commitment,
                                          cfg.codebook_weight, generator=ctx.noise)
            return loss
        if t["seqs"] is None:        # resumed inside the prior stage
            t["seqs"] = self._sequences()
        # one draw of models (with replacement, so a batch may exceed the model count)
        pick = torch.randint(0, len(t["models"]), (cfg.prior_batch,), generator=ctx.generator)
        pick = ctx.shard(pick)
        picks = [t["models"][int(p)] for p in pick]
        toks, slts, valid = self._batch(picks, t["seqs"], t["slots"], ctx.device,
                                        self.context, cfg.tokens_per_chunk, ctx.generator)
        cols = torch.tensor([c for c, _ in picks], device=ctx.device)
        with ctx.autocast():
            return self.prior.loss(toks, slts, valid, t["arch"][cols],
                                   t["data"][cols] if t["data"] is not None else None)

    @staticmethod
    def _batch(picks: list[tuple[int, int]], seqs: list[Tensor], slots: list[Tensor],
               device: torch.device, context: int, step: int,
               generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Token sequences of the picked models, padded; one longer than the context is cut
        to a random window (starting on a chunk boundary, ``step`` tokens a chunk)."""
        width = context - context % step
        n = min(max(seqs[c].shape[1] for c, _ in picks), width)
        toks = torch.zeros(len(picks), n, dtype=torch.long, device=device)
        slts = torch.zeros(len(picks), n, 3, dtype=torch.long, device=device)
        valid = torch.zeros(len(picks), n, dtype=torch.bool, device=device)
        for b, (c, r) in enumerate(picks):
            k = seqs[c].shape[1]
            a = 0
            if k > width:
                a = step * int(torch.randint(0, (k - width) // step + 1, (1,),
                                             generator=generator))
                k = width
            toks[b, :k] = seqs[c][r, a:a + k]
            slts[b, :k] = slots[c][a:a + k]
            valid[b, :k] = True
        return toks, slts, valid

    @staticmethod
    def _ids(entry: ZooEntry) -> Tensor:
        return entry.position_offset + torch.arange(entry.tokenizer.num_tokens)

    @torch.no_grad()
    def _chunk_context(self, arch: Tensor, tokenizer: Tokenizer, ids: Tensor | None) -> Tensor:
        """The VQ-VAE's context [C, hidden] for every chunk of a layout (``arch`` [1, 384]);
        ``ids``: its chunks' position ids (-1 or None: position-free, outside the zoo)."""
        device = self.device
        C = tokenizer.num_tokens
        return self.vqvae.context(arch.to(device).expand(C, -1), tokenizer.positions.to(device),
                                  ids.to(device) if ids is not None else None)

    # ------------------------------------------------------------------ sampling
    def _target(self, like: Mapping[str, Tensor], dataset: str | None,
                architecture: str | None) -> Target:
        """How to sample models like ``like`` for ``dataset``: a seen layout uses its own
        collection; another borrows from the zoo (transfer.borrow)."""
        check_single_dtype(like, "like")
        if self.dataset_conditioned:
            if dataset is None:
                if len(self.datasets) != 1:
                    raise ValueError("this generator is conditioned on datasets "
                                     f"{self.datasets}: pass dataset=TEXT")
                dataset = self.datasets[0]
        elif dataset is not None:
            raise ValueError(f"dataset={dataset!r}, but this generator was trained without "
                             "dataset conditioning (its collections named no dataset); sample "
                             "it with dataset=None")
        sig = layout_signature(like)
        same = [e for e in self.zoo if e.signature == sig]
        exact = [e for e in same if _canon_dataset(e.dataset) == _canon_dataset(dataset)]
        if exact or same:
            entry = (exact or same)[0]
            arch_text = entry.arch_text
            if architecture:
                arch_text = describe_architecture(generated_layout(like), architecture)
            return Target(entry.tokenizer, arch_text, dataset, "seen" if exact else "unseen-pair",
                          self._ids(entry), entry.coords)
        b = borrow(like, self.zoo, _canon_dataset(dataset), self.config.chunk_size,
                   self.config.vectorization)
        return Target(b.tokenizer, describe_architecture(generated_layout(like), architecture),
                      dataset, "unseen-arch", b.position_ids, b.coords)

    def _token_models(self, n: int, like: Any, dataset: str | None, seed: int,
                      temperature: float | None, top_k: int | None, architecture: str | None,
                      progress: bool
                      ) -> tuple[Target, Tensor, Iterator[tuple[int, Tensor, int, int]]]:
        """The target layout, the VQ-VAE context of its chunks, and an iterator of (model
        index, token ids [C, l], coordinate group it is decoded with, sampling seed)."""
        cfg = self.config
        sd = _as_state_dict(like)
        if not any(v.is_floating_point() and v.numel() > 0 for v in sd.values()):
            # Nothing to generate: say so here rather than fail reshaping zero chunks later.
            raise ValueError(f"like= holds no floating-point values to generate (keys: "
                             f"{sorted(sd)[:5]}); give the state dict of the model to sample")
        target = self._target(sd, dataset, architecture)
        tokenizer, l = target.tokenizer, cfg.tokens_per_chunk
        temperature = cfg.temperature if temperature is None else float(temperature)
        top_k = cfg.top_k if top_k is None else int(top_k)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        device = self.device
        arch = self._embed([target.arch_text]).to(device)
        data = self._embed([dataset_text(target.dataset)]).to(device) \
            if self.dataset_conditioned else None
        slots = chunk_slots(tokenizer, l).to(device)
        gen = torch.Generator(device=device).manual_seed(seed)
        # each sample is decoded around one group (basin) of its collection, drawn uniformly
        groups = target.coords.groups if target.coords is not None else 1
        group_of = torch.randint(0, groups, (n,), generator=torch.Generator().manual_seed(seed))
        prior = self.prior.to(device).eval()

        def models() -> Iterator[tuple[int, Tensor, int]]:
            bar = progress_bar(n, "igpg sample", progress)
            for start in range(0, n, cfg.sample_batch):
                k = min(cfg.sample_batch, n - start)
                toks = prior.generate(slots.expand(k, -1, -1), arch.expand(k, -1),
                                      data.expand(k, -1) if data is not None else None,
                                      temperature, top_k, gen, step=l)
                for j in range(k):
                    yield start + j, toks[j].view(-1, l), int(group_of[start + j])
                    bar.update(1)
            bar.close()

        return target, self._chunk_context(arch, tokenizer, target.position_ids), models()

    @torch.no_grad()
    def _decode_into(self, target: Target, tokens: Tensor, context: Tensor, sink, group: int,
                     noise: tuple[int, int] | None = None, scale: float | None = None,
                     block: int = 4096) -> None:
        """Decode one model's token ids [C, l] a block of chunks at a time into ``sink``,
        un-standardised with the coordinate statistics of ``group``; ``noise`` = (seed, model
        index) adds the residual noise (config ``residual_noise``), None: none."""
        stream = Detokenizer(target.tokenizer, sink)
        vq = self.vqvae.to(self.device).eval()
        scale = self.config.residual_noise if scale is None else float(scale)
        if not scale >= 0:
            raise ValueError(f"residual_noise must be >= 0, got {scale}")
        gen = None
        if noise is not None and scale > 0:
            gen = torch.Generator().manual_seed(noise[0] * 1_000_003 + noise[1] + 1)
        for s in range(0, tokens.shape[0], block):
            x = vq.decode(tokens[s:s + block], context[s:s + block]).float().cpu()
            if target.coords is not None:
                eps = scale * torch.randn(x.shape, generator=gen) if gen is not None else None
                x = target.coords.restore(x, group, s, eps)
            stream.feed(x)
        stream.close()

    @torch.no_grad()
    def _sample(self, n: int, *, seed: int = 0, progress: bool = False, like: Any = None,
                dataset: str | None = None, temperature: float | None = None,
                top_k: int | None = None, architecture: str | None = None,
                residual_noise: float | None = None) -> list[dict[str, Tensor]]:
        """``n`` state dicts with exactly ``like``'s keys, shapes and dtypes, for ``dataset``.

        ``like``: a state dict, an ``nn.Module`` or a ``.safetensors`` path (its values are not
        used, only its layout; integer buffers and scalars are copied from the matching training
        collection, or from ``like`` for a layout the zoo did not hold). ``temperature`` and
        ``top_k`` shape the prior's sampling (default: the config's). ``architecture``: free
        text added to the layout's description (as ``info["architecture"]`` was in training).
        ``residual_noise``: times the per-coordinate std of the VQ-VAE's error added to each
        decoded chunk (default: the config's; 0: the decoder's output as it is).
        """
        target, context, models = self._token_models(n, like, dataset, seed, temperature,
                                                     top_k, architecture, progress)
        out = []
        for i, tokens, group in models:
            builder = StateDictBuilder(target.tokenizer)
            self._decode_into(target, tokens, context, builder, group, (seed, i), residual_noise)
            out.append(builder.result())
        return out

    @torch.no_grad()
    def _sample_to_files(self, paths: list, *, seed: int = 0, progress: bool = False,
                         metadata: dict[str, str] | None = None, like: Any = None,
                         dataset: str | None = None, temperature: float | None = None,
                         top_k: int | None = None, architecture: str | None = None,
                         residual_noise: float | None = None) -> list[Path]:
        """Sample ``len(paths)`` models, each decoded chunk block by chunk block straight into
        its ``.safetensors`` file (only token ids are held per model, not its values)."""
        target, context, models = self._token_models(len(paths), like, dataset, seed,
                                                     temperature, top_k, architecture, progress)
        written = []
        for i, tokens, group in models:
            sink = SafetensorsSink(target.tokenizer, paths[i], metadata)
            try:
                self._decode_into(target, tokens, context, sink, group, (seed, i),
                                  residual_noise)
            except BaseException:
                sink.abort()
                raise
            written.append(sink.close())
        return written

    @torch.no_grad()
    def encode(self, state_dict: Mapping[str, Tensor], dataset: str | None = None
               ) -> tuple[Tensor, int]:
        """One model's VQ-VAE token ids [C, l] and the coordinate group it was standardised
        with (its nearest group's mean; 0 without coordinate statistics)."""
        self._require_fitted()
        sd = _as_state_dict(state_dict)
        target = self._target(sd, dataset if self.dataset_conditioned else None, None)
        return self._encode(target, sd)[:2]

    def _encode(self, target: Target, sd: Mapping[str, Tensor]) -> tuple[Tensor, int, Tensor]:
        device = self.device
        context = self._chunk_context(self._embed([target.arch_text]), target.tokenizer,
                                      target.position_ids)
        chunks = target.tokenizer.tokenize(sd)
        group = 0
        if target.coords is not None:
            group = target.coords.nearest_group(chunks)
            chunks = target.coords.standardise(chunks, group)
        tokens = self.vqvae.to(device).eval().tokenize(
            chunks.to(device), target.tokenizer.mask.to(device), context)
        return tokens, group, context

    @torch.no_grad()
    def reconstruct(self, state_dict: Mapping[str, Tensor], dataset: str | None = None
                    ) -> dict[str, Tensor]:
        """VQ-VAE round trip of one model: chunk, tokenize, decode (IGPG Table 3's
        "VQVAE reconstruction")."""
        self._require_fitted()
        sd = _as_state_dict(state_dict)
        target = self._target(sd, dataset if self.dataset_conditioned else None, None)
        tokens, group, context = self._encode(target, sd)
        builder = StateDictBuilder(target.tokenizer)
        self._decode_into(target, tokens, context, builder, group)
        return builder.result()

    # ------------------------------------------------------------------ files
    def _saved_config(self) -> dict:
        texts = sorted(self._texts)
        return {
            "dataset_conditioned": self.dataset_conditioned, "context": self.context,
            "zoo": [{"signature": e.signature, "dataset": e.dataset, "arch_text": e.arch_text,
                     "size": e.size, "info": e.info, "position_offset": e.position_offset,
                     "tokenizer": e.tokenizer.to_config()} for e in self.zoo],
            "texts": texts, "timings": self.timings,
        }

    def _saved_tensors(self) -> dict[str, Tensor]:
        tensors = {f"vqvae.{k}": v for k, v in self.vqvae.state_dict().items()}
        tensors.update({f"prior.{k}": v for k, v in self.prior.state_dict().items()})
        for i, e in enumerate(self.zoo):
            tensors.update({f"zoo.{i}.{k}": v for k, v in e.tokenizer.copied_tensors().items()})
            if e.coords is not None:
                tensors[f"coords.{i}.mean"] = e.coords.mean
                tensors[f"coords.{i}.std"] = e.coords.std
                if e.coords.residual is not None:
                    tensors[f"coords.{i}.residual"] = e.coords.residual
        texts = sorted(self._texts)
        if texts:
            tensors["text_embeddings"] = torch.stack([self._texts[t] for t in texts])
        return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}

    def _restore(self, config: dict, tensors: dict[str, Tensor], where: Path) -> None:
        self.dataset_conditioned = bool(config["dataset_conditioned"])
        self.context = int(config["context"])
        self.timings = dict(config.get("timings") or {})
        self.zoo = []
        for i, z in enumerate(config["zoo"]):
            prefix = f"zoo.{i}."
            own = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            # generators saved before the coordinate statistics have none: identity
            coords = (CoordinateStats(tensors[f"coords.{i}.mean"], tensors[f"coords.{i}.std"],
                                      tensors.get(f"coords.{i}.residual"))
                      if f"coords.{i}.mean" in tensors else None)
            self.zoo.append(ZooEntry(z["signature"], z["dataset"], z["arch_text"],
                                     Tokenizer.from_config(z["tokenizer"], own), int(z["size"]),
                                     dict(z.get("info") or {}), int(z["position_offset"]),
                                     coords))
        texts = config.get("texts") or []
        if texts:
            self._texts = dict(zip(texts, tensors["text_embeddings"].unbind(0)))
        self._build_networks(TEXT_DIM)
        for name, module in (("vqvae", self.vqvae), ("prior", self.prior)):
            load_module(module, tensors, name, where)
