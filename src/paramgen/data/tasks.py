"""Binary relabelling tasks: every way to split k classes into a "0" group and a "1" group.

A task is a bit string with one character per class; character ``c`` is the binary label that
original class ``c`` maps to (``"0101010101"``: odd digits are positive). The all-0 and all-1
strings are excluded because they leave a single class, so k classes give ``2**k - 2`` tasks.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "all_tasks",
    "bits_to_condition",
    "class_weights",
    "parse_bits",
    "parse_task_spec",
    "read_task_file",
    "relabel",
    "resolve_tasks",
    "task_index",
    "task_subset",
]

BitsLike = str | Sequence[int] | Sequence[bool] | Sequence[float] | Tensor | np.ndarray


def _check_num_classes(num_classes: int) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    if num_classes > 24:
        # 2**k strings are materialised in memory; beyond this the list would be huge.
        raise ValueError(f"num_classes={num_classes} is too large to enumerate tasks (max 24)")
    return num_classes


def all_tasks(num_classes: int = 10) -> list[str]:
    """All ``2**num_classes - 2`` non-trivial tasks, in lexicographic order of the bit string."""
    k = _check_num_classes(num_classes)
    # Counting upwards in binary with class 0 as the most significant character gives exactly
    # the lexicographic order, so the order is easy to reproduce by hand.
    return [format(i, f"0{k}b") for i in range(1, 2**k - 1)]


def task_subset(n: int, num_classes: int = 10, seed: int = 0) -> list[str]:
    """``n`` distinct tasks drawn at random (seeded) from :func:`all_tasks`.

    The draw is a prefix of one seeded permutation, so a larger ``n`` with the same seed extends
    a smaller one instead of reshuffling it.
    """
    tasks = all_tasks(num_classes)
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= len(tasks):
        raise ValueError(
            f"n must be an int in 0..{len(tasks)} for {num_classes} classes, got {n!r}"
        )
    order = np.random.default_rng(int(seed)).permutation(len(tasks))
    return [tasks[i] for i in order[:n]]


def parse_bits(bits: BitsLike, num_classes: int | None = 10) -> str:
    """Validate a task given as a string, a sequence of 0/1 or a tensor; return its bit string.

    ``num_classes=None`` accepts any length >= 2. Raises ValueError naming the bad value for a
    wrong length, a character or entry other than 0/1, or an all-0 / all-1 task.
    """
    if isinstance(bits, Tensor):
        values: list = bits.detach().flatten().tolist()
    elif isinstance(bits, np.ndarray):
        values = bits.ravel().tolist()
    elif isinstance(bits, str):
        values = list(bits.strip())
    elif isinstance(bits, Sequence):
        values = list(bits)
    else:
        raise ValueError(f"task bits must be a string, sequence or tensor, got {bits!r}")
    chars = []
    for i, v in enumerate(values):
        if v in ("0", "1"):
            chars.append(v)
        elif not isinstance(v, str) and v in (0, 1):  # covers bool, int and float 0.0/1.0
            chars.append(str(int(v)))
        else:
            raise ValueError(f"task bits {bits!r}: entry {i} is {v!r}, expected 0 or 1")
    s = "".join(chars)
    if num_classes is not None and len(s) != num_classes:
        raise ValueError(f"task bits {bits!r} have length {len(s)}, expected {num_classes}")
    if len(s) < 2:
        raise ValueError(f"task bits {bits!r} need at least 2 classes")
    if "0" not in s or "1" not in s:
        raise ValueError(f"task bits {bits!r} are all {s[0]}: a task needs both labels 0 and 1")
    return s


def bits_to_condition(bits: BitsLike, num_classes: int | None = 10) -> Tensor:
    """The task as a float32 vector of 0/1, the condition stored with task-grid checkpoints."""
    return torch.tensor([float(c) for c in parse_bits(bits, num_classes)], dtype=torch.float32)


def relabel(y: Tensor, bits: BitsLike) -> Tensor:
    """Map each class label ``c`` in ``y`` to ``int(bits[c])``; returns int64 of ``y``'s shape."""
    s = parse_bits(bits, num_classes=None)
    y = torch.as_tensor(y)
    if y.dtype.is_floating_point or y.dtype == torch.bool:
        raise ValueError(f"relabel: labels must be integers, got dtype {y.dtype}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= len(s)):
        raise ValueError(f"relabel: labels span {int(y.min())}..{int(y.max())} "
                         f"but task {s!r} covers classes 0..{len(s) - 1}")
    table = torch.tensor([int(c) for c in s], dtype=torch.int64, device=y.device)
    return table[y.long()]


def class_weights(y: Tensor, num_classes: int = 2) -> Tensor:
    """Class-balanced weights for ``CrossEntropyLoss(weight=...)``: ``n / (num_classes * count_c)``.

    For a binary task that is ``n / (2 * count_c)``. A class absent from ``y`` gets weight 0
    (it never appears in the loss, and this avoids dividing by zero).
    """
    y = torch.as_tensor(y)
    if y.dtype.is_floating_point or y.dtype == torch.bool:
        raise ValueError(f"class_weights: labels must be integers, got dtype {y.dtype}")
    if y.numel() == 0:
        raise ValueError("class_weights: y is empty")
    if int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise ValueError(f"class_weights: labels span {int(y.min())}..{int(y.max())}, "
                         f"outside 0..{num_classes - 1}")
    counts = torch.bincount(y.flatten().long().cpu(), minlength=num_classes).to(torch.float32)
    weights = torch.zeros(num_classes, dtype=torch.float32)
    present = counts > 0
    weights[present] = y.numel() / (num_classes * counts[present])
    return weights


def task_index(bits: str) -> int:
    """Position of a (validated) task in :func:`all_tasks`: stable whatever subset is collected."""
    return int(bits, 2) - 1


def _is_bit_string(text: str, num_classes: int) -> bool:
    # "0101010101" and "0000000011" are tasks, not the numbers 101010101 and 11: a run of 0/1
    # of the class count's length, or with a leading zero (no one writes a count that way), is
    # bits. Anything else made of digits ("5", "100") is a count of random tasks.
    return (len(text) >= 2 and set(text) <= {"0", "1"}
            and (len(text) == num_classes or text[0] == "0"))


def resolve_tasks(tasks: str | int | Iterable[BitsLike], num_classes: int = 10,
                  seed: int = 0) -> list[str]:
    """The task list a grid collects, from any way a user names it.

    ``"all"``; a count ``N`` (int, or a string of digits that is not a bit string): a seeded
    random subset of N tasks (:func:`task_subset`); a bit string or a comma-separated list of
    them; or a sequence of bit-likes. Duplicates are dropped, order kept. This is the one place
    that tells bits from counts.
    """
    if isinstance(tasks, bool):
        raise ValueError(f"tasks={tasks!r}: expected 'all', a count or bit strings")
    count = None
    if isinstance(tasks, int):
        count = tasks
    if isinstance(tasks, str):
        text = tasks.strip()
        if text.lower() == "all":
            return all_tasks(num_classes)
        if text.isdigit() and not _is_bit_string(text, num_classes):
            count = int(text)
    if count is not None:
        # A count of 0 is a valid subset size but selects nothing: refuse it here, before a
        # caller creates the output folder for a grid that would stay empty.
        if count == 0:
            raise ValueError(f"tasks={tasks!r} selects no task; give a count of at least 1, "
                             "'all' or bit strings")
        return task_subset(count, num_classes=num_classes, seed=seed)
    if isinstance(tasks, str):
        tasks = [t.strip() for t in text.split(",") if t.strip()]
    out: list[str] = []
    for t in tasks:
        b = parse_bits(t, num_classes=num_classes)
        if b not in out:
            out.append(b)
    if not out:
        raise ValueError(f"tasks={tasks!r} selects no task")
    return out


def read_task_file(path: str | os.PathLike) -> list[str]:
    """Bit strings from a text file, one per line; ``#`` starts a comment, blank lines skip."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"task file {path} is a folder; give a text file with one bit string "
                         "per line")
    if not path.is_file():
        raise FileNotFoundError(f"task file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"task file {path} is not UTF-8 text ({exc})") from None
    tasks = [ln.split("#")[0].strip() for ln in text.splitlines()]
    tasks = [t for t in tasks if t]
    if not tasks:
        raise ValueError(f"task file {path} lists no tasks")
    return tasks


def parse_task_spec(spec: str) -> str | list[str]:
    """A command line's task list: ``@FILE`` reads bit strings from a file (`read_task_file`);
    anything else ('all', N, comma-separated bit strings) is returned for `resolve_tasks`, the one
    place that tells bit strings from counts."""
    spec = spec.strip()
    if spec.startswith("@"):
        return read_task_file(spec[1:])
    return spec
