"""A short, stable hash of training data: the identity a resumed fit checks its saved state
against (:func:`data_fingerprint`), built a tensor or a slice at a time (:class:`Fingerprint`)."""

from __future__ import annotations

import hashlib
import math
from typing import Sequence

import torch
from torch import Tensor

# Tensors of this many bytes or more are fingerprinted by their rows' sums (float64), not by
# every byte: hashing a few GB byte by byte costs more than it is worth for a resume check.
FINGERPRINT_SUMS_FROM = 1 << 28


class Fingerprint:
    """:func:`data_fingerprint` built up a piece at a time, with the same digest.

    ``add(t)`` hashes a whole tensor (or None); ``begin(shape, dtype)`` then ``feed(part)`` hash
    a tensor given in slices along its first dimension (a checkpoint's tokens as they are made,
    never all held at once). Both feed the hash the same bytes, so the digest of a collection
    does not depend on how it was held.
    """

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._by_sums = False

    def add(self, tensor: Tensor | None) -> None:
        if tensor is None:
            self._hash.update(b"none")
            return
        self.begin(tuple(tensor.shape), tensor.dtype)
        self.feed(tensor)

    def begin(self, shape: Sequence[int], dtype: torch.dtype) -> None:
        """Start a tensor of ``shape`` and ``dtype`` whose slices follow through :meth:`feed`."""
        shape = tuple(int(s) for s in shape)
        self._hash.update(str((shape, str(dtype))).encode())
        size = math.prod(shape) * torch.empty(0, dtype=dtype).element_size()
        self._by_sums = size >= FINGERPRINT_SUMS_FROM

    def feed(self, part: Tensor) -> None:
        """The next slice (along the first dimension) of the tensor begun, or all of it."""
        part = part.detach().cpu().contiguous()
        if self._by_sums:  # a row's sum does not depend on the rows around it: slices agree
            self._hash.update(part.sum(dim=-1, dtype=torch.float64).numpy())
        else:  # the buffer itself: no copy of the data
            self._hash.update(part.reshape(-1).view(torch.uint8).numpy())

    def hexdigest(self) -> str:
        return self._hash.hexdigest()[:16]


def data_fingerprint(*tensors: Tensor | None) -> str:
    """A short hash identifying training data (shape, and every value)."""
    fingerprint = Fingerprint()
    for t in tensors:
        fingerprint.add(t)
    return fingerprint.hexdigest()
