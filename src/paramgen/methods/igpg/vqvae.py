"""The Gumbel VQ-VAE that turns a chunk of K normalised values into l codebook tokens (§2.2).

Encoder E: K values -> l latent vectors z (dimension d). Each z is compared with the m codebook
entries; the negative squared distances are the logits pi of eq. (1). Training quantises with the
straight-through Gumbel-softmax (the forward pass uses the one-hot sample, so the decoder always
sees exactly one codebook entry per token, as at inference; the gradient flows through the soft
sample at temperature tau). Inference takes the argmax. Decoder D: l codebook entries -> K values.

Both halves are conditioned on where the chunk sits (as IGPG's public code conditions on an
architecture embedding and a chunk-index embedding): a context vector made of (a) the architecture
text's embedding and the chunk's (tensor, chunk-in-tensor) position, and (b) a learned embedding
of each chunk position the zoo holds. (a) exists for any layout, (b) only for layouts seen in
training; (b) is dropped for a tenth of the training chunks so the decoder also works from (a)
alone, which is what a layout outside the zoo gets. Without (b), an MLP has to tell apart
hundreds of neighbouring chunk positions from smooth position features, and reconstruction
stalled far above what the models' accuracy tolerates (docs/igpg.md).

Loss, eq. (2): ||M . (theta - theta_hat)||^2 over the non-padding values (mean over them)
+ gamma ||z - sg[z_q]||^2 (commitment) + beta ||sg[z] - z_q||^2 (codebook).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paramgen.embeddings import sinusoidal_2d

CONTEXT_DROP = 0.1


def _mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, hidden),
                         nn.GELU(), nn.Linear(hidden, d_out))


class _Conditioned(nn.Module):
    """An MLP whose first hidden layer also receives the chunk's context vector."""

    def __init__(self, d_in: int, hidden: int, d_out: int):
        super().__init__()
        self.first = nn.Linear(d_in, hidden)
        self.rest = nn.Sequential(nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                  nn.Linear(hidden, d_out))

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        return self.rest(self.first(x) + context)


class GumbelVQVAE(nn.Module):
    def __init__(self, chunk_size: int, tokens_per_chunk: int, codebook_size: int,
                 code_dim: int, hidden: int, num_positions: int, cond_dim: int):
        super().__init__()
        self.chunk_size = chunk_size
        self.tokens = tokens_per_chunk
        self.code_dim = code_dim
        self.hidden = hidden
        self.arch_context = nn.Sequential(nn.Linear(cond_dim + hidden, hidden), nn.GELU(),
                                          nn.Linear(hidden, hidden))
        self.position_context = nn.Embedding(max(num_positions, 1), hidden)
        nn.init.normal_(self.position_context.weight, std=0.5)
        # The encoder sees which values are padding (mask as a second input row), so a short
        # last chunk is not mistaken for one whose tail is exactly zero.
        self.encoder = _Conditioned(2 * chunk_size, hidden, tokens_per_chunk * code_dim)
        self.decoder = _Conditioned(tokens_per_chunk * code_dim, hidden, chunk_size)
        self.codebook = nn.Parameter(torch.randn(codebook_size, code_dim))
        self.logit_scale = 10.0
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    @property
    def codebook_size(self) -> int:
        return int(self.codebook.shape[0])

    def context(self, arch: Tensor, positions: Tensor, position_ids: Tensor | None,
                drop: float = 0.0, generator: torch.Generator | None = None) -> Tensor:
        """Context [B, hidden] of chunks: their architecture embedding [B, cond_dim], their
        (tensor, chunk) positions [B, 2] and, for seen layouts, their position ids [B]
        (None or -1: a layout outside the zoo)."""
        c = self.arch_context(torch.cat([arch, sinusoidal_2d(positions, self.hidden)
                                         .to(arch.dtype)], -1))
        if position_ids is not None:
            known = position_ids >= 0
            if drop > 0:
                keep = torch.rand(known.shape, generator=generator, device=known.device) >= drop
                known = known & keep
            table = self.position_context(position_ids.clamp_min(0))
            c = c + table * known[:, None].to(table.dtype)
        return c

    def encode(self, chunks: Tensor, mask: Tensor, context: Tensor) -> Tensor:
        """Chunks [B, K] -> unit-norm latents z [B, l, d]."""
        x = torch.cat([chunks * mask, mask.to(chunks.dtype)], dim=-1)
        z = self.encoder(x, context).view(-1, self.tokens, self.code_dim)
        return F.normalize(z, dim=-1)

    @property
    def codes(self) -> Tensor:
        """The codebook entries, unit norm: latents and codes live on the sphere, so the
        commitment and codebook terms cannot shrink both towards one point (unnormalised, they
        collapsed here to a scale of 0.03 and the decoder learned nothing)."""
        return F.normalize(self.codebook, dim=-1)

    def logits(self, z: Tensor) -> Tensor:
        """pi of eq. (1): negative squared distance of each latent to each codebook entry
        (2 z.e - 2 on the sphere), scaled so that a near code wins clearly."""
        return self.logit_scale * 2.0 * (z @ self.codes.t() - 1.0)

    @torch.no_grad()
    def init_codebook(self, z: Tensor, generator: torch.Generator | None = None) -> None:
        """Start the codebook on encoder outputs, so no entry begins far from the data."""
        flat = z.reshape(-1, self.code_dim)
        idx = torch.randint(0, flat.shape[0], (self.codebook_size,), generator=generator,
                            device=flat.device)
        self.codebook.copy_(flat[idx] + 0.05 * torch.randn_like(flat[idx]))
        self.initialised.fill_(True)

    def tokenize(self, chunks: Tensor, mask: Tensor, context: Tensor) -> Tensor:
        """Chunks [B, K] -> token ids [B, l] (argmax, no noise)."""
        return self.logits(self.encode(chunks, mask, context)).argmax(-1)

    def decode(self, tokens: Tensor, context: Tensor) -> Tensor:
        """Token ids [B, l] -> chunks [B, K]."""
        return self.decoder(self.codes[tokens].reshape(tokens.shape[0], -1), context)

    def loss(self, chunks: Tensor, mask: Tensor, context: Tensor, tau: float,
             commitment: float, codebook_weight: float,
             generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, float]]:
        """Eq. (2) on a batch of chunks [B, K] with their padding mask [B, K] and context."""
        z = self.encode(chunks, mask, context)
        if not bool(self.initialised):
            self.init_codebook(z.detach(), generator)
        logits = self.logits(z)
        u = torch.rand(logits.shape, generator=generator, device=logits.device)
        gumbel = -torch.log(-torch.log(u.clamp(1e-10, 1.0 - 1e-7)))
        soft = F.softmax((logits + gumbel) / tau, dim=-1)
        hard = F.one_hot(soft.argmax(-1), self.codebook_size).to(soft.dtype)
        y = hard + soft - soft.detach()                       # straight-through
        z_q = y @ self.codes
        recon = self.decoder(z_q.reshape(z.shape[0], -1), context)
        m = mask.to(recon.dtype)
        rec = ((recon - chunks) ** 2 * m).sum() / m.sum().clamp_min(1.0)
        commit = F.mse_loss(z, z_q.detach())
        code = F.mse_loss(z.detach(), z_q)
        total = rec + commitment * commit + codebook_weight * code
        used = hard.sum((0, 1)).gt(0).sum().item()
        return total, {"recon": float(rec.detach()), "commit": float(commit.detach()),
                       "codes_used": used}
