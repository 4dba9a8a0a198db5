"""The training tokens of a collection, [N, L, T]: in memory, or in a file read a window at a time.

Windowed training (window.py) reads, each step, W consecutive tokens of a few checkpoints. When
the tokens of the whole collection are large (over ``TOKENS_IN_MEMORY_MAX_BYTES``), :func:`tokenize`
writes each checkpoint's tokens to a file as soon as it is tokenized, and each step reads back
only its windows with positioned reads: the process holds one checkpoint's tokens while writing
and b x W tokens while training, whatever the model's size. (A memory map would read the same
bytes, but every page a run touches would count in the process's memory.)

Both stores answer :meth:`windows` with the same values, so training draws the same batches and
gives bit-identical weights either way. The file is the fit's own scratch, a temporary file in
the fit's workdir (or the system's temporary folder) that has no name another program could
open or clobber (``tempfile.TemporaryFile``: on Linux and macOS it is unlinked as it is created),
so no reader ever sees it half-written, and it is gone when the fit closes it, whether the fit
succeeds or fails, and even when the process is killed. Under a multi-process launch each
process writes and reads its own copy.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable, Mapping

import torch
from torch import Tensor

from paramgen.methods.fingerprint import Fingerprint
from paramgen.tokenize import Tokenizer

# Token data larger than this go to a file when training is windowed (the whole-sequence loss
# reads every token of a checkpoint each step, so it keeps them in memory). 64 MB is 16M values:
# below it the tokens cost less than the training step's own working memory (~200 MB on CPU).
TOKENS_IN_MEMORY_MAX_BYTES = 64 * 2**20


class MemoryTokens:
    """All tokens in one tensor [N, L, T] (on the training device)."""

    def __init__(self, tokens: Tensor):
        self.tensor = tokens
        self.shape = tuple(tokens.shape)

    def to(self, device: torch.device) -> "MemoryTokens":
        return MemoryTokens(self.tensor.to(device))

    def windows(self, seqs: Tensor, index: Tensor) -> Tensor:
        """Tokens [b, W, T] of checkpoints ``seqs`` [b] at token indices ``index`` [b, W]."""
        return self.tensor[seqs[:, None], index]

    def close(self) -> None:
        pass


class FileTokens:
    """Tokens [N, L, T] in a file of float32 rows (checkpoint-major), read a window at a time."""

    def __init__(self, file, shape: tuple[int, int, int]):
        self._file = file
        self.shape = tuple(int(s) for s in shape)
        self._row_bytes = self.shape[2] * 4
        self._device = torch.device("cpu")

    def to(self, device: torch.device) -> "FileTokens":
        self._device = torch.device(device)
        return self

    def _read(self, seq: int, start: int, out: Tensor) -> None:
        """Tokens ``start : start + len(out)`` of checkpoint ``seq`` into ``out``."""
        offset = (seq * self.shape[1] + start) * self._row_bytes
        view = memoryview(out.numpy()).cast("B")
        done = 0
        while done < len(view):
            self._file.seek(offset + done)
            got = self._file.readinto(view[done:])
            if not got:
                raise RuntimeError(f"the training-token file ends early, at byte "
                                   f"{offset + done} (disk full while it was written?)")
            done += got

    def windows(self, seqs: Tensor, index: Tensor) -> Tensor:
        """Tokens [b, W, T] of checkpoints ``seqs`` [b] at token indices ``index`` [b, W]:
        one read per checkpoint, of the span its indices cover (W tokens for a window)."""
        seqs, index = seqs.cpu(), index.cpu()
        T = self.shape[2]
        out = torch.empty(*index.shape, T)
        for j in range(index.shape[0]):
            row = index[j]
            first, last = int(row.min()), int(row.max())
            span = torch.empty(last - first + 1, T)
            self._read(int(seqs[j]), first, span)
            out[j] = span[row - first]  # the clamped tail of a last window repeats token L-1
        return out.to(self._device)

    @property
    def closed(self) -> bool:
        return self._file.closed

    def close(self) -> None:
        """Close the file, which deletes it."""
        self._file.close()


TokenStore = MemoryTokens | FileTokens


@torch.no_grad()
def token_means(tokens, groups: Tensor | None, num_groups: int) -> Tensor:
    """Mean tokens [num_groups, L, T] of a token store: over the checkpoints of each group
    (``groups`` [N], a group index per checkpoint; None: one group of all), one checkpoint read
    at a time."""
    n, L, T = tokens.shape
    total = torch.zeros(num_groups, L, T, dtype=torch.float64)
    count = torch.zeros(num_groups, dtype=torch.float64)
    every = torch.arange(L)[None]
    for i in range(n):
        g = 0 if groups is None else int(groups[i])
        total[g] += tokens.windows(torch.tensor([i]), every)[0].cpu().double()
        count[g] += 1
    return (total / count.clamp_min(1)[:, None, None]).float()


def goes_to_file(tokenizer: Tokenizer, num_checkpoints: int, window: int) -> bool:
    """Whether a fit keeps its tokens in a file: windowed training and more than
    ``TOKENS_IN_MEMORY_MAX_BYTES`` of tokens."""
    size = num_checkpoints * tokenizer.num_tokens * tokenizer.token_size * 4
    return window > 0 and size > TOKENS_IN_MEMORY_MAX_BYTES


def tokenize(tokenizer: Tokenizer, state_dicts: Iterable[Mapping[str, Tensor]], n: int,
             fingerprint: Fingerprint, to_file: bool = False,
             folder: str | os.PathLike | None = None) -> TokenStore:
    """Tokenize ``n`` state dicts into a store, feeding ``fingerprint`` the tokens as they come
    (the same bytes either way, so the data fingerprint does not depend on the store)."""
    shape = (n, tokenizer.num_tokens, tokenizer.token_size)
    fingerprint.begin(shape, torch.float32)
    if not to_file:
        tokens = torch.empty(shape)  # filled in place: a stacked list would hold it twice
        for i, sd in enumerate(state_dicts):
            tokens[i] = tokenizer.tokenize(sd)
            fingerprint.feed(tokens[i])
        return MemoryTokens(tokens)
    if folder is not None:
        Path(folder).mkdir(parents=True, exist_ok=True)
    file = tempfile.TemporaryFile(prefix=".rpg-tokens.", dir=folder, buffering=0)
    try:
        count = 0
        for sd in state_dicts:
            part = tokenizer.tokenize(sd)
            fingerprint.feed(part)
            _write_all(file, memoryview(part.numpy()).cast("B"))
            count += 1
        if count != n:
            raise ValueError(f"the collection gave {count} checkpoints, {n} expected")
    except BaseException:
        file.close()
        raise
    # No fsync: the file lives only as long as this fit, which reads it back through the page
    # cache; a crash loses the fit's scratch either way.
    return FileTokens(file, shape)


def _write_all(file, data: memoryview) -> None:
    done = 0
    while done < len(data):
        done += file.write(data[done:])
