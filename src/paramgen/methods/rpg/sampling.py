"""RPG sampling: the backbone runs block by block with its state carried, and the sampler
denoises each block: one model and ``SEQUENTIAL_BLOCK`` tokens a call (``sequential``), about
``partial_batch`` tokens of all models a block (``partial``), or all at once (``full``). The
blocks go to a sink as they are made (a state dict being built, or a safetensors file)."""

from __future__ import annotations

from typing import Any, Iterator

import torch
from torch import Tensor

from paramgen.diffusion import NoiseSchedule, sampling_plan
from paramgen.diffusion import sample as run_sampler
from paramgen.methods.base import check_finite
from paramgen.methods.rpg.config import SAMPLING_MODES, RPGConfig
from paramgen.methods.rpg.network import RPGNetwork
from paramgen.notices import progress_bar
from paramgen.tokenize import Detokenizer, Tokenizer
from paramgen.training import autocast_dtype

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


def autocast(mode: str, device: torch.device):
    """The autocast context of the config's ``autocast`` setting on ``device`` (off when the
    setting or the device gives no lower precision)."""
    dtype = autocast_dtype(mode, device)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else \
        torch.autocast(device.type, enabled=False)


def plan_request(n: Any, mode: str | None, sampler: str | None, steps: int | None,
                 config: RPGConfig) -> tuple[str, str, int | None]:
    """Refuse a bad number of samples, mode or sampler; the mode, sampler and sampler steps a
    call uses (the config's where the call gives none)."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    mode = mode or config.sampling_mode
    if mode not in SAMPLING_MODES:
        raise ValueError(f"mode must be one of {SAMPLING_MODES}, got {mode!r}")
    return (mode, *sampling_plan(config, sampler, steps))


def token_blocks(net: RPGNetwork, tokenizer: Tokenizer, config: RPGConfig,
                 schedule: NoiseSchedule, states: Tensor | None, cond: Tensor | None, n: int,
                 seed: int, mode: str, sampler: str, steps: int | None,
                 device: torch.device, progress: bool, guidance: float = 1.0
                 ) -> Iterator[tuple[list[int], int, Tensor]]:
    """Generate tokens block by block: yields (models, first token, tokens [k, c, T]).

    ``net`` is on ``device`` in eval mode; ``states`` and ``cond`` hold one row per model;
    ``mode``, ``sampler`` and ``steps`` are :func:`plan_request`'s. A
    backbone that carries state (mamba, lstm, none) runs one block of token positions at a
    time, so nothing of size L is ever held: sequential mode (one model, a few tokens at a
    time) samples a model of any size in constant memory. The transformer has no state to
    carry; its prototypes for the whole sequence are computed first. ``guidance`` w != 1
    (classifier-free guidance, for a generator trained with ``condition_dropout``) runs the
    backbone a second time with the null condition (zeros) and denoises with
    x0(null) + w (x0(condition) - x0(null)).
    """
    noise_gen = torch.Generator(device=device).manual_seed(seed + 1)
    L, T = tokenizer.num_tokens, tokenizer.token_size
    # sequential: one model at a time, a small block of tokens a call (one token a call
    # spent most of its time in per-call overhead); partial: all models together,
    # about partial_batch tokens a block; full: everything in one block.
    groups = [[i] for i in range(n)] if mode == "sequential" else [list(range(n))]
    width = {"sequential": min(SEQUENTIAL_BLOCK, config.partial_batch),
             "partial": max(1, config.partial_batch // n), "full": L}[mode]
    backbone = net.backbone
    bar = progress_bar(n * L, "rpg sample", progress)
    for group in groups:
        idx = torch.tensor(group)
        st = states[idx].to(device) if states is not None else None
        cd = cond[idx.to(device)] if cond is not None else None
        k = len(group)
        conds = [cd] if guidance == 1.0 or cd is None else [cd, torch.zeros_like(cd)]
        if backbone.streams:
            carries = [backbone.init_state(k, device) for _ in conds]
        else:
            with autocast(config.autocast, device):
                wholes = [net.prototypes(st, c, k).float() for c in conds]
        for start in range(0, L, width):
            end = min(start + width, L)
            ps = []
            for j, c in enumerate(conds):
                if backbone.streams:
                    # In pieces too: the scan's working memory grows with the tokens per call.
                    pieces = []
                    step = max(1, SAMPLING_PIECE // k)
                    for a in range(start, end, step):
                        b = min(a + step, end)
                        with autocast(config.autocast, device):
                            out, carries[j] = backbone.forward_stateful(
                                net.backbone_input(st, c, k, a, b), carries[j])
                        rows = torch.arange(a, b, device=out.device)
                        pieces.append(net.add_fixed(out.float(), st, c, rows))
                    protos = torch.cat(pieces, dim=1)
                else:
                    protos = wholes[j][:, start:end]
                ps.append(protos.reshape(k * (end - start), T))
            noise = torch.randn(ps[0].shape, generator=noise_gen, device=device)
            with autocast(config.autocast, device):
                x = run_sampler(lambda xt, t: _guided(net, xt, t, ps, guidance), noise,
                                schedule, sampler, steps, config.prediction,
                                generator=noise_gen)
            x = x.float().cpu().reshape(k, end - start, T)
            check_finite(x, "RPG sampling")
            yield group, start, x
            bar.update(ps[0].shape[0])
    bar.close()


def detokenize_blocks(tokenizer: Tokenizer, blocks: Iterator[tuple[list[int], int, Tensor]],
                      sinks: list) -> None:
    """Feed each model's blocks, in order, to its sink, and close the sinks."""
    streams = [Detokenizer(tokenizer, sink) for sink in sinks]
    for group, _, x in blocks:
        for j, i in enumerate(group):
            streams[i].feed(x[j])
    for stream in streams:
        stream.close()


def _guided(net: RPGNetwork, x: Tensor, t: Tensor, prototypes: list[Tensor],
            guidance: float) -> Tensor:
    """The denoiser's output for the condition's prototypes, or with a second list entry (the
    null condition's) the classifier-free guided combination."""
    out = _denoise_in_pieces(net, x, t, prototypes[0])
    if len(prototypes) == 1:
        return out
    null = _denoise_in_pieces(net, x, t, prototypes[1])
    return null + guidance * (out - null)


def _denoise_in_pieces(net: RPGNetwork, x: Tensor, t: Tensor, prototypes: Tensor) -> Tensor:
    """``net.denoise`` on ``SAMPLING_PIECE`` tokens at a time (each token is denoised on its own:
    the result is one call's, up to float rounding)."""
    if x.shape[0] <= SAMPLING_PIECE:
        return net.denoise(x, t, prototypes)
    return torch.cat([net.denoise(x[i:i + SAMPLING_PIECE], t[i:i + SAMPLING_PIECE],
                                  prototypes[i:i + SAMPLING_PIECE])
                      for i in range(0, x.shape[0], SAMPLING_PIECE)])
