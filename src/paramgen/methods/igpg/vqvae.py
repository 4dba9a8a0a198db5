"""The Gumbel VQ-VAE that turns a chunk of K normalised values into l codebook tokens (§2.2).

Encoder E: K values -> l latent vectors z (dimension d). Each z is compared with the m codebook
entries; the negative squared distances are the logits pi of eq. (1). Training quantises with the
straight-through Gumbel-softmax (the forward pass uses the one-hot sample, so the decoder always
sees exactly one codebook entry per token, as at inference; the gradient flows through the soft
sample at temperature tau). Inference takes the argmax. Decoder D: l codebook entries -> K values.

Loss, eq. (2): ||M . (theta - theta_hat)||^2 over the non-padding values (mean over them)
+ gamma ||z - sg[z_q]||^2 (commitment) + beta ||sg[z] - z_q||^2 (codebook).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, hidden),
                         nn.GELU(), nn.Linear(hidden, d_out))


class GumbelVQVAE(nn.Module):
    def __init__(self, chunk_size: int, tokens_per_chunk: int, codebook_size: int,
                 code_dim: int, hidden: int):
        super().__init__()
        self.chunk_size = chunk_size
        self.tokens = tokens_per_chunk
        self.code_dim = code_dim
        # The encoder sees which values are padding (mask as a second input row), so a short
        # last chunk is not mistaken for one whose tail is exactly zero.
        self.encoder = _mlp(2 * chunk_size, hidden, tokens_per_chunk * code_dim)
        self.decoder = _mlp(tokens_per_chunk * code_dim, hidden, chunk_size)
        self.codebook = nn.Parameter(torch.randn(codebook_size, code_dim) * 0.1)
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    @property
    def codebook_size(self) -> int:
        return int(self.codebook.shape[0])

    def encode(self, chunks: Tensor, mask: Tensor) -> Tensor:
        """Chunks [B, K] -> latents z [B, l, d]."""
        x = torch.cat([chunks * mask, mask.to(chunks.dtype)], dim=-1)
        return self.encoder(x).view(-1, self.tokens, self.code_dim)

    def logits(self, z: Tensor) -> Tensor:
        """pi of eq. (1): negative squared distance of each latent to each codebook entry."""
        return -(z.pow(2).sum(-1, keepdim=True) - 2 * z @ self.codebook.t()
                 + self.codebook.pow(2).sum(-1))

    @torch.no_grad()
    def init_codebook(self, z: Tensor, generator: torch.Generator | None = None) -> None:
        """Start the codebook on encoder outputs, so no entry begins far from the data."""
        flat = z.reshape(-1, self.code_dim)
        idx = torch.randint(0, flat.shape[0], (self.codebook_size,), generator=generator,
                            device=flat.device)
        self.codebook.copy_(flat[idx] + 0.01 * torch.randn_like(flat[idx]))
        self.initialised.fill_(True)

    def tokenize(self, chunks: Tensor, mask: Tensor) -> Tensor:
        """Chunks [B, K] -> token ids [B, l] (argmax, no noise)."""
        return self.logits(self.encode(chunks, mask)).argmax(-1)

    def decode(self, tokens: Tensor) -> Tensor:
        """Token ids [B, l] -> chunks [B, K]."""
        return self.decoder(self.codebook[tokens].reshape(tokens.shape[0], -1))

    def loss(self, chunks: Tensor, mask: Tensor, tau: float, commitment: float,
             codebook_weight: float, generator: torch.Generator | None = None
             ) -> tuple[Tensor, dict[str, float]]:
        """Eq. (2) on a batch of chunks [B, K] with their padding mask [B, K]."""
        z = self.encode(chunks, mask)
        if not bool(self.initialised):
            self.init_codebook(z.detach(), generator)
        logits = self.logits(z)
        u = torch.rand(logits.shape, generator=generator, device=logits.device)
        gumbel = -torch.log(-torch.log(u.clamp(1e-10, 1.0 - 1e-7)))
        soft = F.softmax((logits + gumbel) / tau, dim=-1)
        hard = F.one_hot(soft.argmax(-1), self.codebook_size).to(soft.dtype)
        y = hard + soft - soft.detach()                       # straight-through
        z_q = y @ self.codebook
        recon = self.decoder(z_q.reshape(z.shape[0], -1))
        m = mask.to(recon.dtype)
        rec = ((recon - chunks) ** 2 * m).sum() / m.sum().clamp_min(1.0)
        commit = F.mse_loss(z, z_q.detach())
        code = F.mse_loss(z.detach(), z_q)
        total = rec + commitment * commit + codebook_weight * code
        used = hard.sum((0, 1)).gt(0).sum().item()
        return total, {"recon": float(rec.detach()), "commit": float(commit.detach()),
                       "codes_used": used}
