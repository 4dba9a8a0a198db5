"""The autoregressive prior (§2.3): a small GPT over a model's codebook tokens.

The sequence of one model is [arch, (dataset), s_0, s_1, ..., s_{N-1}]: the architecture and
dataset embeddings (projected from the sentence encoder's 384 values) are the first tokens, as
the paper concatenates them with the codebook embeddings; then the tokens of every chunk in
order. The input that predicts token i also carries where token i sits (tensor index, chunk in
tensor, token in chunk, as sinusoidal features, plus a learned absolute position), so the prior
always knows which layer it is writing. Causal attention; cross-entropy on the next token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paramgen.embeddings import sinusoidal


def slot_features(slots: Tensor, dim: int) -> Tensor:
    """[N, 3] (tensor, chunk, token) -> [N, dim] sinusoidal features (a third each)."""
    a = dim // 3
    b = dim // 3
    c = dim - a - b
    return torch.cat([sinusoidal(slots[:, 0], a), sinusoidal(slots[:, 1], b),
                      sinusoidal(slots[:, 2], c)], 1)


class GPTPrior(nn.Module):
    def __init__(self, vocab: int, dim: int, layers: int, heads: int, context: int,
                 cond_dim: int, dataset_conditioned: bool, dropout: float = 0.0):
        super().__init__()
        self.vocab = vocab
        self.context = context
        self.dim = dim
        self.dataset_conditioned = dataset_conditioned
        self.prefix = 2 if dataset_conditioned else 1
        self.arch_proj = nn.Sequential(nn.Linear(cond_dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.data_proj = (nn.Sequential(nn.Linear(cond_dim, dim), nn.GELU(), nn.Linear(dim, dim))
                          if dataset_conditioned else None)
        self.token_emb = nn.Embedding(vocab, dim)
        self.position = nn.Parameter(torch.zeros(context, dim))
        nn.init.normal_(self.position, std=0.02)
        self.slot_proj = nn.Linear(dim, dim)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, heads, dim_feedforward=4 * dim, dropout=dropout,
                                       activation="gelu", batch_first=True, norm_first=True)
            for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)

    def _inputs(self, tokens: Tensor, slots: Tensor, arch: Tensor, data: Tensor | None
                ) -> Tensor:
        """Inputs [B, prefix + n - 1, dim] that predict tokens 0..n-1 of sequences ``tokens``
        [B, n - 1] already generated (n = slots.shape[1] positions to predict)."""
        B, n = slots.shape[0], slots.shape[1]
        where = self.slot_proj(slot_features(slots.reshape(-1, 3), self.dim).view(B, n, -1)
                               .to(self.position.dtype)) + self.position[:n]
        prefix = [self.arch_proj(arch)[:, None]]
        if self.data_proj is not None:
            prefix.append(self.data_proj(data)[:, None])
        prefix = torch.cat(prefix, 1)
        # The last prefix token predicts token 0; token i-1 predicts token i.
        body = torch.cat([prefix[:, -1:], self.token_emb(tokens[:, :n - 1])], 1) + where
        return torch.cat([prefix[:, :-1], body], 1)

    def forward(self, tokens: Tensor, slots: Tensor, arch: Tensor, data: Tensor | None
                ) -> Tensor:
        """Logits [B, n, vocab] for positions 0..n-1 (n = slots.shape[1])."""
        h = self._inputs(tokens, slots, arch, data)
        length = h.shape[1]
        mask = torch.ones(length, length, dtype=torch.bool, device=h.device).triu_(1)
        for block in self.blocks:
            h = block(h, src_mask=mask, is_causal=True)
        return self.head(self.norm(h[:, self.prefix - 1:]))

    def loss(self, tokens: Tensor, slots: Tensor, valid: Tensor, arch: Tensor,
             data: Tensor | None) -> Tensor:
        """Mean next-token cross-entropy over the valid (non-padding) positions."""
        logits = self.forward(tokens, slots, arch, data)
        target = tokens.masked_fill(~valid, -100)
        return F.cross_entropy(logits.reshape(-1, self.vocab).float(), target.reshape(-1),
                               ignore_index=-100)

    @torch.no_grad()
    def generate(self, slots: Tensor, arch: Tensor, data: Tensor | None, temperature: float,
                 top_k: int | None, generator: torch.Generator | None) -> Tensor:
        """Sample token ids [B, n] for B models whose token positions are ``slots`` [B, n, 3]."""
        B, n = slots.shape[0], slots.shape[1]
        out = torch.zeros(B, n, dtype=torch.long, device=slots.device)
        for i in range(n):
            logits = self.forward(out[:, :i + 1], slots[:, :i + 1], arch, data)[:, i].float()
            logits = logits / temperature
            if top_k is not None and top_k < logits.shape[-1]:
                kth = logits.topk(top_k, dim=-1).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = F.softmax(logits, -1)
            out[:, i] = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        return out
