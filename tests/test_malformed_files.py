"""Property: any edit of a manifest or a tokenizer layout loads, or fails with a clean ValueError.

Hypothesis takes a valid CheckpointSet manifest (and a valid saved tokenizer layout), replaces a
randomly chosen field anywhere in it with random JSON (or deletes it), or garbles its bytes, and
checks the reader either accepts the result or raises ValueError with a message: never a
TypeError, KeyError, AttributeError or another type that would reach a user as a traceback.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paramgen.checkpoints import MANIFEST, CheckpointSet, CheckpointWriter
from paramgen.tokenize import Tokenizer

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)


def _paths(obj, prefix=()):
    """Every location in a JSON value, as a tuple of keys / indices."""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


@st.composite
def edits(draw, original):
    """A copy of `original` with one to three fields replaced by random JSON or deleted."""
    doc = copy.deepcopy(original)
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(list(_paths(doc))))
        if not where:
            doc = draw(JSON)
            continue
        parent = doc
        try:
            for k in where[:-1]:
                parent = parent[k]
            if draw(st.booleans()) and isinstance(parent, dict):
                del parent[where[-1]]
            else:
                parent[where[-1]] = draw(JSON)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit removed that location
    return doc


def _valid_set(folder: Path) -> dict:
    g = torch.Generator().manual_seed(0)
    sds = [{"fc.weight": torch.randn(3, 2, generator=g), "fc.bias": torch.randn(3, generator=g),
            "bn.num_batches_tracked": torch.tensor(4)} for _ in range(2)]
    CheckpointSet.from_state_dicts(sds, conditions=[[0.0, 1.0], [1.0, 0.0]], runs=[0, 1],
                                   metrics=[{"accuracy": 0.5}] * 2,
                                   provenance=[{"task": "01"}] * 2,
                                   info={"arch": "toy"}).save(folder)
    return json.loads((folder / MANIFEST).read_text())


SET_DIR = Path(__file__).parent  # replaced per run by a temporary folder (see below)


def _check_clean(call) -> None:
    try:
        call()
    except ValueError as exc:
        assert str(exc).strip(), "a ValueError without a message"


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_malformed_manifests_load_or_fail_cleanly(tmp_path_factory, data) -> None:
    folder = tmp_path_factory.mktemp("set")
    manifest = _valid_set(folder)
    broken = data.draw(edits(manifest))
    (folder / MANIFEST).write_text(json.dumps(broken))
    _check_clean(lambda: CheckpointSet.load(folder).validate())
    _check_clean(lambda: CheckpointWriter(folder).close())


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300), cut=st.integers(0, 2000))
def test_garbled_manifest_bytes_fail_cleanly(tmp_path_factory, raw, cut) -> None:
    folder = tmp_path_factory.mktemp("set")
    _valid_set(folder)
    text = (folder / MANIFEST).read_bytes()
    (folder / MANIFEST).write_bytes(text[:cut] + raw)
    _check_clean(lambda: CheckpointSet.load(folder))


def _valid_layout() -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(1)
    emb = torch.randn(4, 3, generator=g)
    sds = [{"emb": emb, "w": torch.randn(2, 5, generator=g), "head": emb,
            "t": torch.tensor(0.3 * i), "n": torch.tensor(7)} for i in range(2)]
    tk = Tokenizer.fit(sds, token_size=4, mode="channel")
    return json.loads(json.dumps(tk.to_config())), tk.copied_tensors()


LAYOUT, COPIED = _valid_layout()


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_malformed_tokenizer_layouts_load_or_fail_cleanly(data) -> None:
    broken = data.draw(edits(LAYOUT))

    def load_and_use():
        tk = Tokenizer.from_config(broken, COPIED)
        tk.detokenize(torch.zeros(tk.num_tokens, tk.token_size))  # a loaded layout must work

    _check_clean(load_and_use)


def test_the_unedited_files_load() -> None:
    tk = Tokenizer.from_config(LAYOUT, COPIED)
    out = tk.detokenize(torch.zeros(tk.num_tokens, tk.token_size))
    assert torch.equal(out["emb"], out["head"]) and list(out) == ["emb", "w", "head", "t", "n"]
