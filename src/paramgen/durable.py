"""Commits that survive a crash at any instant: folder syncs, and a weights file + its JSON.

Every single file paramgen writes is atomic already (:mod:`paramgen.io`: a temporary file,
synced, renamed). What a rename cannot cover is a *pair* of files that must agree, such as a
generator folder's ``model.safetensors`` and the ``config.json`` that names its checksum: two
renames, and a kill between them leaves new weights beside the old config. :func:`write_pair`
makes such a pair crash-consistent, and :func:`read_committed_json` reads it back:

1. the new JSON goes first to a side file, ``.NAME.pending`` (it names the new weights'
   checksum, so it is known before the weights land);
2. the weights are renamed into place;
3. the JSON is renamed into place, and the side file deleted.

A reader that finds a side file (a save was cut short) takes whichever of the two JSON files
names the weights actually there: the old pair before step 2, the new pair after it. Without a
side file (every completed save) reading costs nothing extra.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import save as safetensors_bytes

from paramgen import io
from paramgen.io.atomic import fsync_folder  # re-exported: train_state and others import it here


def pending_path(json_path: str | os.PathLike) -> Path:
    """The side file that holds a JSON file's next version while its pair is being saved."""
    json_path = Path(json_path)
    return json_path.with_name(f".{json_path.name}.pending")


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _serialize(tensors: Mapping[str, torch.Tensor],
               metadata: dict[str, str] | None) -> bytes:
    # The bytes are made before anything is written, so their checksum can go into the pending
    # JSON first. safetensors refuses shared or non-contiguous storage; copy only then.
    plain = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    try:
        return safetensors_bytes(plain, metadata=metadata)
    except RuntimeError:  # tensors sharing memory (tied weights)
        return safetensors_bytes({k: v.clone() for k, v in plain.items()}, metadata=metadata)


def write_pair(weights_path: str | os.PathLike, tensors: Mapping[str, torch.Tensor],
               json_path: str | os.PathLike, meta: dict[str, Any],
               checksum_key: str = "weights_sha256") -> str:
    """Save ``tensors`` to ``weights_path`` and ``meta`` (plus ``checksum_key``: the weights'
    sha256) to ``json_path`` so that a crash at any instant leaves the old pair or the new one
    readable through :func:`read_committed_json`. Returns the checksum."""
    weights_path, json_path = Path(weights_path), Path(json_path)
    data = _serialize(tensors, None)
    digest = hashlib.sha256(data).hexdigest()
    meta = {**meta, checksum_key: digest}
    pending = pending_path(json_path)
    # Each write syncs its file and its folder before it returns (paramgen.io.atomic), so the
    # three steps reach the disk in this order.
    io.write_json(pending, meta)
    io.write_bytes(weights_path, data)
    del data
    io.write_json(json_path, meta)
    pending.unlink(missing_ok=True)
    fsync_folder(json_path.parent)
    return digest


def read_committed_json(json_path: str | os.PathLike, weights_path: str | os.PathLike,
                        checksum_key: str = "weights_sha256") -> Any:
    """The parsed JSON of a pair written by :func:`write_pair`: ``json_path``, or, after a save
    cut short between its renames, the pending version when it (and not ``json_path``) names
    the weights on disk. Raises what ``json.loads`` and ``open`` raise, like a plain read."""
    json_path = Path(json_path)
    committed = json.loads(Path(json_path).read_text())
    pending = pending_path(json_path)
    if not pending.is_file() or not Path(weights_path).is_file():
        return committed
    try:
        candidate = json.loads(pending.read_text())
    except (OSError, ValueError):  # a pending file is written atomically; this one is foreign
        return committed
    if not isinstance(candidate, dict) or not isinstance(committed, dict):
        return committed
    actual = sha256_file(weights_path)
    if committed.get(checksum_key) != actual and candidate.get(checksum_key) == actual:
        return candidate
    return committed
