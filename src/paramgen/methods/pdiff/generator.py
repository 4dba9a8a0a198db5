"""p-diff: neural network diffusion (Wang et al., 2024), the method RPG is measured against.

Two stages of the one training engine, one after the other:

1. **Parameter autoencoder** (stage ``ae``). The generated parameters of a checkpoint are
   normalised per tensor (the shared :class:`~paramgen.tokenize.Tokenizer`) and flattened into
   one vector ``v`` of ``d`` values. A 1D-conv encoder and one fully connected layer map it to a
   latent ``z``; a mirrored decoder maps ``z`` back. Training adds Gaussian noise to the input
   (``sigma_v = 0.001``) and to the latent (``sigma_z = 0.1``), p-diff's augmentation that makes
   the decoder robust to latents it has not seen, and minimises the L2 reconstruction error.
2. **Latent DDPM** (stage ``ddpm``). The clean latents of the training checkpoints are
   standardised and a small 1D-conv denoiser with a fully connected bottleneck
   (:class:`paramgen.diffusion.LatentDenoiser`) learns them (epsilon prediction).

Sampling: noise -> DDPM (all 1000 steps) or DDIM (k steps) -> latent -> decoder -> parameters.
**Partial generation** (p-diff's default setting, shared by every generator): ``keys`` picks the
tensors to generate; every other tensor is copied from a reference checkpoint.
p-diff is unconditional: ``sample(condition=...)`` raises ``ValueError``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from paramgen import notices
from paramgen.diffusion import NoiseSchedule, diffusion_loss, sampling_plan
from paramgen.diffusion import sample as run_sampler
from paramgen.methods.base import Generator, check_finite
from paramgen.methods.fingerprint import data_fingerprint
from paramgen.methods.folder import load_module
from paramgen.methods.pdiff.config import PDiffConfig
from paramgen.methods.pdiff.network import PDiffNetwork
from paramgen.methods.pdiff.options import OPTIONS
from paramgen.methods.registry import register_method
from paramgen.tokenize import Tokenizer, is_generated
from paramgen.training import Stage, StepContext


def split_steps(steps: int | None, ae_steps: int, ddpm_steps: int) -> tuple[int, int]:
    """How ``fit(steps=...)`` divides its steps: (autoencoder steps, DDPM steps).

    ``None`` keeps the config's ``ae_steps`` and ``ddpm_steps``. A number is split in the same
    proportion, rounded, with at least one step per stage (so ``steps`` must be >= 2).
    """
    if steps is None:
        return int(ae_steps), int(ddpm_steps)
    steps = int(steps)
    if steps < 2:
        raise ValueError(f"p-diff trains two stages (autoencoder, then DDPM): steps must be >= 2, "
                         f"got {steps}")
    ae = round(steps * ae_steps / (ae_steps + ddpm_steps))
    ae = min(max(ae, 1), steps - 1)
    return ae, steps - ae


@register_method("pdiff")
class PDiff(Generator):
    """p-diff parameter generator. ``PDiff(preset="cpu")`` or ``PDiff(config=PDiffConfig(...))``."""

    config_cls = PDiffConfig
    options = OPTIONS
    config: PDiffConfig

    tokenizer: Tokenizer | None
    network: PDiffNetwork | None

    @property
    def schedule(self) -> NoiseSchedule:
        """The latent diffusion noise schedule of these settings."""
        return NoiseSchedule.of(self.config)

    def _build(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.network = PDiffNetwork(self.config, tokenizer.num_values)

    def _require_fitted(self) -> None:
        if self.network is None or self.tokenizer is None:
            raise RuntimeError("this p-diff generator is not trained: call fit() or "
                               "from_pretrained()")

    # ------------------------------------------------------------------ training
    def _fit(self, ckpts, *, steps: int | None = None, seed: int = 0,
             workdir: str | os.PathLike | None = None, progress: bool = True,
             callback: Callable[[int, float], None] | None = None) -> "PDiff":
        """Train the autoencoder, then the latent DDPM, on a CheckpointSet (or state dicts).

        ``steps`` (default ``ae_steps + ddpm_steps`` of the config) is split between the two
        stages in the config's proportion (:func:`split_steps`). With ``workdir`` the training
        state is saved periodically and at the end of each stage; a later call with the same
        workdir, data, settings and steps continues from the last save.
        """
        cfg = self.config
        ae_total, ddpm_total = split_steps(steps, cfg.ae_steps, cfg.ddpm_steps)
        if len(ckpts) == 0:
            raise ValueError("cannot fit p-diff on an empty checkpoint collection")
        if getattr(ckpts, "conditions", None) is not None:
            notices.warn("p-diff is unconditional: the checkpoints' conditions are ignored and "
                         "one distribution is learned over all of them")
        engine = self._engine()
        torch.manual_seed(seed)
        self.collection_info = dict(getattr(ckpts, "info", None) or {})
        part = self._select_keys(ckpts)
        generated = [k for k in self.generated_keys]
        # p-diff only uses flatten/unflatten (per-tensor normalisation and its exact inverse). One
        # "flat" token the size of the whole vector is the tokenizer's smallest layout.
        values = sum(v.numel() for v in part[0].values() if is_generated(v))
        tokenizer = Tokenizer.fit(part, token_size=max(values, 1), mode="flat")
        data = torch.stack([tokenizer.flatten(sd) for sd in part])      # [N, d]
        self._build(tokenizer)
        if cfg.standardize_coordinates and len(data) > 1:
            mean, std = data.mean(0), data.std(0)
            std = torch.where(std > 1e-12, std, torch.ones_like(std))
            self.network.coord_mean.copy_(mean)
            self.network.coord_std.copy_(std)
            data = (data - mean) / std
        self._train = dict(data=data.to(engine.device), ae_steps=ae_total, ddpm_steps=ddpm_total,
                           latents=None)
        try:
            self._run_engine(engine, seed=seed, workdir=workdir, progress=progress,
                             callback=callback,
                             data_fingerprint=data_fingerprint(data) + ":" + ",".join(generated))
        finally:
            self._train = None
        return self

    def training_stages(self) -> list[Stage]:
        cfg, net = self.config, self.network
        return [Stage("ae", self._train["ae_steps"], net.autoencoder, lr=cfg.ae_lr,
                      weight_decay=cfg.ae_weight_decay, schedule=cfg.lr_schedule,
                      min_lr_ratio=cfg.min_lr_ratio, grad_clip=cfg.grad_clip),
                Stage("ddpm", self._train["ddpm_steps"], net.denoiser, lr=cfg.ddpm_lr,
                      weight_decay=cfg.ddpm_weight_decay, schedule=cfg.lr_schedule,
                      min_lr_ratio=cfg.min_lr_ratio, grad_clip=cfg.grad_clip)]

    def training_modules(self) -> dict[str, nn.Module]:
        # the whole network: the latent statistics (buffers) belong to neither stage's module
        return {"network": self.network}

    def on_stage_end(self, stage: Stage) -> None:
        # The AE is frozen once its stage ends: its latent statistics are fixed here, before the
        # engine's end-of-stage save, and the DDPM's data is encoded once.
        if stage.name == "ae":
            self._train["latents"] = self._fit_latent_stats(self._train["data"])

    def training_loss(self, ctx: StepContext) -> Tensor:
        cfg, net, data = self.config, self.network, self._train["data"]
        n = data.shape[0]
        if ctx.stage.name == "ae":
            batch = ctx.batch(n, cfg.ae_batch_size).to(ctx.device)
            v = data[batch]
            with ctx.autocast():
                recon = net.autoencoder(v, cfg.input_noise, cfg.latent_noise, generator=ctx.noise,
                                        relative=cfg.relative_latent_noise)
            return ((recon.float() - v) ** 2).mean()
        if self._train["latents"] is None:  # resumed inside the DDPM stage
            self._train["latents"] = self._latents(data)
        net.autoencoder.eval()
        batch = ctx.batch(n, cfg.ddpm_batch_size).to(ctx.device)
        z0 = self._train["latents"][batch]
        with ctx.autocast():
            return diffusion_loss(net.denoiser, z0, torch.ones_like(z0), self.schedule,
                                  "epsilon", generator=ctx.noise)

    @torch.no_grad()
    def _encode(self, v: Tensor) -> Tensor:
        """Clean latents of vectors [N, d], encoded 256 at a time."""
        ae = self.network.autoencoder.eval()
        return torch.cat([ae.encode(v[i:i + 256]) for i in range(0, v.shape[0], 256)])

    @torch.no_grad()
    def _fit_latent_stats(self, data: Tensor) -> Tensor:
        """Standardisation of the clean training latents: per-dimension mean, one global std.
        Returns the standardised training latents.

        One std (not one per dimension) keeps the latent's shape: a dimension the encoder barely
        uses stays small instead of being blown up to unit scale, noise and all.
        """
        net = self.network
        z = self._encode(data)
        mean = z.mean(dim=0)
        std = (z - mean).pow(2).mean().sqrt()
        # A single checkpoint (or identical ones) has no spread: keep unit scale then.
        if not float(std) > 1e-8:
            std = torch.ones((), device=z.device)
        net.latent_mean.copy_(mean)
        net.latent_std.copy_(std)
        return (z - net.latent_mean) / net.latent_std

    @torch.no_grad()
    def _latents(self, v: Tensor) -> Tensor:
        """Standardised clean latents of vectors [N, d]."""
        net = self.network
        return (self._encode(v) - net.latent_mean) / net.latent_std

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample_latents(self, n: int = 1, seed: int = 0, sampler: str | None = None,
                       steps: int | None = None) -> Tensor:
        """``n`` latents [n, latent_dim] from the DDPM, in the autoencoder's latent space."""
        self._require_fitted()
        cfg = self.config
        sampler, steps = sampling_plan(cfg, sampler, steps)
        device = self.device
        net = self.network.to(device).eval()
        gen = torch.Generator(device=device).manual_seed(seed)
        noise = torch.randn(n, cfg.latent_dim, generator=gen, device=device)
        z = run_sampler(net.denoiser, noise, self.schedule, sampler,
                        steps if sampler != "ddpm" else None, "epsilon", generator=gen)
        z = z * net.latent_std + net.latent_mean
        # The encoder's tanh never leaves (-1, 1); neither should a latent given to the decoder.
        return z.clamp(-1.0, 1.0)

    @torch.no_grad()
    def decode(self, z: Tensor, batch: int | None = None,
               progress: bool = False) -> list[dict[str, Tensor]]:
        """Latents [n, latent_dim] -> complete state dicts, decoded ``batch`` models at a time
        (default ``sample_batch``): the decoder's activations, not the latents, bound memory."""
        self._require_fitted()
        device = self.device
        ae = self.network.to(device).autoencoder.eval()
        batch = max(1, int(batch or self.config.sample_batch))
        out = []
        with notices.progress_bar(z.shape[0], "pdiff decode", progress) as bar:
            for i in range(0, z.shape[0], batch):
                vectors = ae.decode(z[i:i + batch].to(device)).float()
                net = self.network
                vectors = (vectors * net.coord_std + net.coord_mean).cpu()
                check_finite(vectors, "p-diff decoding")
                out += [self._assemble_vector(vec) for vec in vectors]
                bar.update(vectors.shape[0])
        return out

    def _assemble_vector(self, vector: Tensor) -> dict[str, Tensor]:
        """A flat normalised vector -> the full state dict (generated + reference tensors)."""
        return self._assemble(self.tokenizer.unflatten(vector))

    @torch.no_grad()
    def _sample(self, n: int, *, seed: int = 0, progress: bool = False, condition: Any = None,
                sampler: str | None = None, steps: int | None = None,
                mode: str | None = None) -> list[dict[str, Tensor]]:
        """Generate ``n`` state dicts with the training keys, shapes and dtypes.

        ``sampler``/``steps``: ddpm (all timesteps) or ddim with ``steps`` steps (default: the
        config's). ``mode`` bounds decoding memory as RPG's modes do: ``sequential`` decodes one
        model at a time, ``partial`` (default) ``sample_batch`` at a time, ``full`` all at once;
        the samples agree across modes up to float rounding. ``condition`` must be None: p-diff is
        unconditional.
        """
        modes = {"sequential": 1, "partial": self.config.sample_batch, "full": n, None: None}
        if mode not in modes:
            raise ValueError(f"mode must be one of sequential, partial, full, got {mode!r}")
        self._conditions(condition, n, self.device)
        return self.decode(self.sample_latents(n, seed, sampler, steps), modes[mode], progress)

    @torch.no_grad()
    def reconstruct(self, sds: Sequence[Mapping[str, Tensor]]) -> list[dict[str, Tensor]]:
        """Encode and decode state dicts without noise: how well the autoencoder alone does."""
        self._require_fitted()
        v = torch.stack([self.tokenizer.flatten({k: sd[k] for k in self.generated_keys})
                         for sd in sds]).to(self.device)
        v = (v - self.network.coord_mean) / self.network.coord_std
        return self.decode(self.network.autoencoder.eval().encode(v))

    # ------------------------------------------------------------------ files
    def _saved_config(self) -> dict:
        return {"in_dim": self.tokenizer.num_values, "tokenizer": self.tokenizer.to_config()}

    def _saved_tensors(self) -> dict[str, Tensor]:
        tensors = {f"network.{k}": v for k, v in self.network.state_dict().items()}
        tensors.update(self.tokenizer.copied_tensors())
        return tensors

    def _restore(self, config: dict, tensors: dict[str, Tensor], where: Path) -> None:
        for k in self.key_order:
            if k not in set(self.generated_keys) and k not in self.reference:
                raise ValueError(f"{where / 'model.safetensors'} lacks the reference tensor "
                                 f"{k!r} its config names")
        self._build(Tokenizer.from_config(config["tokenizer"], tensors))
        # generators saved before the collapse fix have no coordinate statistics: identity
        tensors.setdefault("network.coord_mean", torch.zeros_like(self.network.coord_mean))
        tensors.setdefault("network.coord_std", torch.ones_like(self.network.coord_std))
        load_module(self.network, tensors, "network", where)
