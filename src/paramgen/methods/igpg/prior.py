"""The autoregressive prior (§2.3): a small GPT over a model's codebook tokens.

The sequence of one model is [arch, (dataset), s_0, s_1, ..., s_{N-1}]: the architecture and
dataset embeddings (projected from the sentence encoder's 384 values) are the first tokens, as
the paper concatenates them with the codebook embeddings; then the tokens of every chunk in
order. The input that predicts token i also carries where token i sits (tensor index, chunk in
tensor, token in chunk, as sinusoidal features, plus a learned absolute position), so the prior
always knows which layer it is writing. Causal attention; cross-entropy on the next token.
Sampling keeps each layer's keys and values (a KV cache), so a model of N tokens costs N
one-token steps rather than N passes over a growing prefix. A model longer than the context is
written in overlapping windows (Algorithm 1 lines 10-19; training sees random windows of the
sequences longer than the context, so a window that starts mid-model is a case it learned).
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


class Block(nn.Module):
    """Pre-norm causal self-attention and MLP, with an optional key/value cache."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.dropout = dropout

    def forward(self, x: Tensor, cache: list | None = None) -> Tensor:
        """x [B, T, dim]. With ``cache`` (a list, empty at first), x holds the next positions
        only and attends to the cached keys and values, which are extended in place."""
        B, T, D = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(B, T, 3, self.heads, D // self.heads) \
            .permute(2, 0, 3, 1, 4)
        if cache is not None:
            if cache:
                k = torch.cat([cache[0], k], 2)
                v = torch.cat([cache[1], v], 2)
            cache[:] = [k, v]
        # causal within the new positions; every cached position is in the past
        causal = T > 1
        if causal and k.shape[2] != T:
            past = k.shape[2] - T
            mask = torch.ones(T, k.shape[2], dtype=torch.bool, device=x.device).tril_(past)
            att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            att = F.scaled_dot_product_attention(
                q, k, v, is_causal=causal,
                dropout_p=self.dropout if self.training else 0.0)
        x = x + self.proj(att.transpose(1, 2).reshape(B, T, D))
        return x + self.mlp(self.norm2(x))


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
        self.blocks = nn.ModuleList(Block(dim, heads, dropout) for _ in range(layers))
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
        for block in self.blocks:
            h = block(h)
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
                 top_k: int | None, generator: torch.Generator | None,
                 step: int = 1) -> Tensor:
        """Sample token ids [B, n] for B models whose token positions are ``slots`` [B, n, 3].

        Past the context (n > context) the sequence is written window by window, the paper's
        Algorithm 1 lines 10-19: the first window as usual, then each next window conditioned on
        the last half of the tokens already written (re-read as its prompt, at window positions
        0, 1, ...; the slot features keep the true tensor/chunk positions). Windows start on a
        multiple of ``step`` (the tokens per chunk), as the training windows do."""
        n = slots.shape[1]
        if n <= self.context:
            return self._window(None, slots, arch, data, temperature, top_k, generator)
        width = self.context - self.context % step
        keep = max(step, (width // 2) // step * step)
        out = self._window(None, slots[:, :width], arch, data, temperature, top_k, generator)
        while out.shape[1] < n:
            done = out.shape[1]
            new = min(width - keep, n - done)
            more = self._window(out[:, done - keep:], slots[:, done - keep:done + new], arch,
                                data, temperature, top_k, generator)
            out = torch.cat([out, more], 1)
        return out

    def _window(self, prompt: Tensor | None, slots: Tensor, arch: Tensor, data: Tensor | None,
                temperature: float, top_k: int | None, generator: torch.Generator | None
                ) -> Tensor:
        """Tokens for the positions of ``slots`` [B, m + new, 3] after ``prompt`` [B, m] (the
        first m of them, given): returns the ``new`` sampled ones, with a KV cache."""
        B, n = slots.shape[0], slots.shape[1]
        m = 0 if prompt is None else prompt.shape[1]
        where = self.slot_proj(slot_features(slots.reshape(-1, 3), self.dim).view(B, n, -1)
                               .to(self.position.dtype)) + self.position[:n]
        prefix = [self.arch_proj(arch)[:, None]]
        if self.data_proj is not None:
            prefix.append(self.data_proj(data)[:, None])
        h = torch.cat(prefix, 1)
        h = torch.cat([h[:, :-1], h[:, -1:] + where[:, :1]], 1)     # predicts token 0
        if m:
            h = torch.cat([h, self.token_emb(prompt) + where[:, 1:m + 1]], 1)
        out = torch.zeros(B, n - m, dtype=torch.long, device=slots.device)
        caches: list[list] = [[] for _ in self.blocks]
        for i in range(n - m):
            for block, cache in zip(self.blocks, caches):
                h = block(h, cache)
            logits = self.head(self.norm(h[:, -1])).float() / temperature
            if top_k is not None and top_k < logits.shape[-1]:
                kth = logits.topk(top_k, dim=-1).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            out[:, i] = torch.multinomial(F.softmax(logits, -1), 1, generator=generator)[:, 0]
            if m + i + 1 < n:
                h = (self.token_emb(out[:, i]) + where[:, m + i + 1])[:, None]
        return out
