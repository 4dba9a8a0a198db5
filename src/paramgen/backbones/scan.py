"""Selective scan (the Mamba S6 recurrence) in pure PyTorch.

For every batch b, channel d and state n::

    h[t] = exp(delta[t] * A) * h[t-1] + delta[t] * u[t] * B[t]
    y[t] = sum_n C[t] * h[t]

Shapes: ``u, delta`` [batch, L, D]; ``A`` [D, N]; ``B, C`` [batch, L, N]; ``h0`` [batch, D, N].
The ``D * u`` skip and the ``silu(z)`` gate are left to the caller.

Three implementations, all exact up to float rounding:

* :func:`selective_scan_ref` - one step at a time with plain autograd. Slow; the reference, and
  the only one that shares its arithmetic with single-token stepping (:func:`ssm_step`).
* :func:`selective_scan_chunked` - the default. The decays and inputs are materialised one chunk
  of time steps at a time (sized to stay in cache), the recurrence runs as one fused in-place
  ``addcmul`` per step, and a hand-written backward runs the adjoint recurrence in reverse,
  recomputing each chunk's states from the state saved at its start instead of storing them.
  No autograd graph grows with L, and nothing of size L * batch * D * N is ever held.
* :func:`selective_scan_parallel` - a log-depth (Hillis-Steele) scan over the whole length with
  plain autograd. Few Python steps, but O(L log L) work and memory; kept for comparison.

All three compute in at least float32 whatever the input dtype (bf16 decay products lose too
much precision over long sequences) and return float32 (float64 for float64 input).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = [
    "SCANS",
    "selective_scan",
    "selective_scan_chunked",
    "selective_scan_parallel",
    "selective_scan_ref",
    "ssm_step",
]

# Elements of one [T, batch, D, N] chunk tensor: 2^20 floats = 4 MiB keeps the three live chunk
# tensors of the backward well inside a shared L3 cache.
_CHUNK_ELEMENTS = 1 << 20
# exp(x) == exp2(x * log2(e)), and exp2 is several times cheaper than exp on x86 CPUs.
_LOG2E = 1.4426950408889634


def _compute_dtype(*tensors: Tensor) -> torch.dtype:
    dtype = torch.float32
    for t in tensors:
        if t is not None:
            dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def _check(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, h0: Tensor | None) -> None:
    if u.dim() != 3 or delta.shape != u.shape:
        raise ValueError(f"u and delta must both be [batch, L, D], got {tuple(u.shape)} and "
                         f"{tuple(delta.shape)}")
    bsz, length, d = u.shape
    if A.dim() != 2 or A.shape[0] != d:
        raise ValueError(f"A must be [D={d}, N], got {tuple(A.shape)}")
    n = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        if tuple(t.shape) != (bsz, length, n):
            raise ValueError(f"{name} must be [{bsz}, {length}, {n}], got {tuple(t.shape)}")
    if h0 is not None and tuple(h0.shape) != (bsz, d, n):
        raise ValueError(f"h0 must be [{bsz}, {d}, {n}], got {tuple(h0.shape)}")


def ssm_step(h: Tensor, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor
             ) -> tuple[Tensor, Tensor]:
    """One step: ``h`` [b, D, N]; ``u, delta`` [b, D]; ``B, C`` [b, N] -> (h, y [b, D])."""
    decay = torch.exp(delta.unsqueeze(-1) * A)
    h = decay * h + (delta * u).unsqueeze(-1) * B.unsqueeze(1)
    y = (h * C.unsqueeze(1)).sum(-1)
    return h, y


def selective_scan_ref(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                       h0: Tensor | None = None, return_state: bool = False
                       ) -> Tensor | tuple[Tensor, Tensor]:
    """Sequential reference scan (plain autograd). Returns y [batch, L, D] (and the last state)."""
    _check(u, delta, A, B, C, h0)
    dtype = _compute_dtype(u, delta, A, B, C, h0)
    u, delta, A, B, C = (t.to(dtype) for t in (u, delta, A, B, C))
    bsz, length, d = u.shape
    h = (h0.to(dtype) if h0 is not None
         else u.new_zeros(bsz, d, A.shape[1]))
    ys = []
    for t in range(length):
        h, y = ssm_step(h, u[:, t], delta[:, t], A, B[:, t], C[:, t])
        ys.append(y)
    y = torch.stack(ys, dim=1)
    return (y, h) if return_state else y


def selective_scan_parallel(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                            h0: Tensor | None = None, return_state: bool = False
                            ) -> Tensor | tuple[Tensor, Tensor]:
    """Log-depth Hillis-Steele scan over the length (plain autograd, O(L log L) memory)."""
    _check(u, delta, A, B, C, h0)
    dtype = _compute_dtype(u, delta, A, B, C, h0)
    u, delta, A, B, C = (t.to(dtype) for t in (u, delta, A, B, C))
    length = u.shape[1]
    # Each position holds the affine map h -> a*h + b; composing maps pairwise doubles the span
    # covered per round. Decays only multiply (|a| <= 1), so nothing can overflow.
    a = torch.exp(delta.unsqueeze(-1) * A)
    b = (delta * u).unsqueeze(-1) * B.unsqueeze(2)
    if h0 is not None:
        first = b[:, :1] + a[:, :1] * h0.to(dtype).unsqueeze(1)
        b = torch.cat([first, b[:, 1:]], dim=1)
    span = 1
    while span < length:
        b = torch.cat([b[:, :span], b[:, span:] + a[:, span:] * b[:, :-span]], dim=1)
        if 2 * span < length:  # the last round's decays are never read
            a = torch.cat([a[:, :span], a[:, span:] * a[:, :-span]], dim=1)
        span *= 2
    y = (b * C.unsqueeze(2)).sum(-1)
    return (y, b[:, -1]) if return_state else y


def _chunk_len(bsz: int, d: int, n: int, length: int, chunk_size: int | None) -> int:
    if chunk_size is None:
        chunk_size = _CHUNK_ELEMENTS // max(1, bsz * d * n)
    return max(1, min(int(chunk_size), length))


def _chunk_states(decay: Tensor, h: Tensor, h_start: Tensor | None) -> Tensor:
    """Turn ``h`` (the inputs of one chunk, [T, b, D, N]) into its states, in place."""
    if h_start is not None:
        h[0].addcmul_(decay[0], h_start)
    for t in range(1, h.shape[0]):
        h[t].addcmul_(decay[t], h[t - 1])
    return h


class _ChunkedScan(torch.autograd.Function):
    """Chunked forward and recompute-based backward for the selective scan (time-major inside).

    Chunk-sized work buffers are allocated once per call and reused through ``out=`` and in-place
    ops: a fresh multi-MiB allocation per chunk costs more (page faults) than the arithmetic.
    """

    @staticmethod
    def forward(ctx, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                h0: Tensor | None, chunk: int) -> tuple[Tensor, Tensor]:
        with torch.autocast(device_type=u.device.type, enabled=False):
            # Time-major copies make every per-step slice contiguous for the in-place addcmul.
            ut = u.transpose(0, 1).contiguous()
            dt = delta.transpose(0, 1).contiguous()
            Bt = B.transpose(0, 1).contiguous()
            Ct = C.transpose(0, 1).contiguous()
            dtu = dt * ut
            A2 = A * _LOG2E
            length, bsz, d = ut.shape
            n = A.shape[1]
            y = ut.new_empty(length, bsz, d)
            decay_buf = ut.new_empty(chunk, bsz, d, n)
            state_buf = ut.new_empty(chunk, bsz, d, n)
            starts = []  # state entering each chunk: all the backward needs to recompute
            h = h0
            for s in range(0, length, chunk):
                e = min(s + chunk, length)
                starts.append(h)
                decay, states = decay_buf[:e - s], state_buf[:e - s]
                torch.mul(dt[s:e, :, :, None], A2, out=decay).exp2_()
                torch.mul(dtu[s:e, :, :, None], Bt[s:e, :, None, :], out=states)
                _chunk_states(decay, states, h)
                # decay is spent: reuse it for the products that y sums over.
                torch.sum(torch.mul(states, Ct[s:e, :, None, :], out=decay), -1, out=y[s:e])
                h = states[-1].clone()  # the buffer is overwritten by the next chunk
            ctx.chunk = chunk
            ctx.has_h0 = h0 is not None
            kept = [st if st is not None else ut.new_zeros(0) for st in starts]
            ctx.save_for_backward(ut, dt, A, Bt, Ct, dtu, *kept)
        return y.transpose(0, 1), h

    @staticmethod
    @once_differentiable  # the backward itself is not differentiable (no double backward)
    def backward(ctx, dy: Tensor, dh_last: Tensor | None):
        ut, dt, A, Bt, Ct, dtu, *starts = ctx.saved_tensors
        chunk = ctx.chunk
        with torch.autocast(device_type=ut.device.type, enabled=False):
            length, bsz, d = ut.shape
            n = A.shape[1]
            dyt = (dy.transpose(0, 1).to(ut.dtype).contiguous() if dy is not None
                   else ut.new_zeros(length, bsz, d))
            d_dt = torch.empty_like(dt)
            d_u = torch.empty_like(ut)
            d_B = torch.empty_like(Bt)
            d_C = torch.empty_like(Ct)
            d_A = torch.zeros_like(A)
            d_dtu = ut.new_empty(chunk, bsz, d)
            A2 = A * _LOG2E
            decay_buf = ut.new_empty(chunk, bsz, d, n)
            state_buf = ut.new_empty(chunk, bsz, d, n)
            grad_buf = ut.new_empty(chunk, bsz, d, n)
            carry = dh_last.to(ut.dtype) if dh_last is not None else None
            bounds = [(s, min(s + chunk, length)) for s in range(0, length, chunk)]
            for idx in range(len(bounds) - 1, -1, -1):
                s, e = bounds[idx]
                size = e - s
                h_start = starts[idx] if starts[idx].numel() else None
                decay, states, g = decay_buf[:size], state_buf[:size], grad_buf[:size]
                torch.mul(dt[s:e, :, :, None], A2, out=decay).exp2_()
                torch.mul(dtu[s:e, :, :, None], Bt[s:e, :, None, :], out=states)
                _chunk_states(decay, states, h_start)
                torch.matmul(dyt[s:e, :, None, :], states, out=d_C[s:e, :, None, :])
                # Adjoint recurrence, run backwards: g[t] = dL/dh[t] including the future's share.
                torch.mul(dyt[s:e, :, :, None], Ct[s:e, :, None, :], out=g)
                if carry is not None:
                    g[-1].add_(carry)
                for t in range(size - 2, -1, -1):
                    g[t].addcmul_(decay[t + 1], g[t + 1])
                carry = decay[0] * g[0]
                # dL/d(delta*A) = g * h[t-1] * decay, built in the decay buffer.
                x = decay.mul_(g)
                if size > 1:
                    x[1:].mul_(states[:-1])
                if h_start is not None:
                    x[0].mul_(h_start)
                else:
                    x[0].zero_()
                torch.sum(torch.mul(x, A, out=states), -1, out=d_dt[s:e])
                d_A += x.mul_(dt[s:e, :, :, None]).sum((0, 1))
                dd = d_dtu[:size]
                torch.sum(torch.mul(g, Bt[s:e, :, None, :], out=states), -1, out=dd)
                torch.matmul(dtu[s:e, :, None, :], g, out=d_B[s:e, :, None, :])
                d_dt[s:e].addcmul_(dd, ut[s:e])
                torch.mul(dd, dt[s:e], out=d_u[s:e])
            d_h0 = carry if ctx.has_h0 else None
        t = lambda x: x.transpose(0, 1)  # noqa: E731 - back to batch-major views
        return t(d_u), t(d_dt), d_A, t(d_B), t(d_C), d_h0, None


def selective_scan_chunked(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                           h0: Tensor | None = None, return_state: bool = False,
                           chunk_size: int | None = None) -> Tensor | tuple[Tensor, Tensor]:
    """Chunked scan with a hand-written, recomputing backward (the fast default on CPU).

    ``chunk_size`` is the number of time steps materialised at once; by default it is chosen so
    one [chunk, batch, D, N] tensor holds about 2^20 elements.
    """
    _check(u, delta, A, B, C, h0)
    dtype = _compute_dtype(u, delta, A, B, C, h0)
    bsz, length, d = u.shape
    chunk = _chunk_len(bsz, d, A.shape[1], length, chunk_size)
    y, h = _ChunkedScan.apply(u.to(dtype), delta.to(dtype), A.to(dtype), B.to(dtype),
                              C.to(dtype), h0.to(dtype) if h0 is not None else None, chunk)
    return (y, h) if return_state else y


ScanFn = Callable[..., "Tensor | tuple[Tensor, Tensor]"]

#: Scan implementations by name; ``"chunked"`` is the default everywhere.
SCANS: dict[str, ScanFn] = {
    "chunked": selective_scan_chunked,
    "parallel": selective_scan_parallel,
    "ref": selective_scan_ref,
}


def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                   h0: Tensor | None = None, return_state: bool = False,
                   method: str = "chunked") -> Tensor | tuple[Tensor, Tensor]:
    """Run the selective scan with the implementation named ``method`` (see :data:`SCANS`)."""
    try:
        fn = SCANS[method]
    except KeyError:
        raise ValueError(f"unknown scan {method!r}; choose one of {sorted(SCANS)}") from None
    return fn(u, delta, A, B, C, h0=h0, return_state=return_state)

