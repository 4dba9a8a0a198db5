"""CheckpointSet and CheckpointWriter: round trips, import, validation, atomic writes, resume."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

import paramgen
from paramgen.checkpoints import (
    MANIFEST,
    CheckpointError,
    CheckpointSet,
    CheckpointWriter,
)
from paramgen.io import LOCK_FILE


def make_sd(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with the dtypes real models carry: float weights, BatchNorm buffers incl. an
    int64 scalar, half-precision tensors."""
    g = torch.Generator().manual_seed(seed)
    return {
        "conv.weight": torch.randn(4, 1, 3, 3, generator=g),
        "bn.weight": torch.rand(4, generator=g),
        "bn.running_mean": torch.randn(4, generator=g),
        "bn.num_batches_tracked": torch.tensor(seed * 7, dtype=torch.int64),
        "fc.weight": torch.randn(3, 4, generator=g).to(torch.bfloat16),
        "fc.bias": torch.randn(3, generator=g).to(torch.float16),
        "emb.index": torch.arange(5, dtype=torch.int32),
    }


def sds_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return list(a) == list(b) and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and torch.equal(a[k], b[k])
        for k in a)


def stray_temp_files(d: Path) -> list[str]:
    return [p.name for p in d.rglob("*") if p.name.endswith(".tmp")]


# ----------------------------------------------------------------------------- round trips

def test_exported_from_package() -> None:
    assert paramgen.CheckpointSet is CheckpointSet
    assert issubclass(CheckpointError, ValueError)  # the command line reports ValueErrors


def test_round_trip_bit_exact(tmp_path: Path) -> None:
    sds = [make_sd(i) for i in range(3)]
    conds = [[0.0, 1.0], [1.0, 0.5], [0.25, -2.0]]
    c = CheckpointSet.from_state_dicts(
        sds, conditions=conds, runs=[0, 0, 1],
        metrics=[{"accuracy": 0.5 + i / 10} for i in range(3)],
        provenance=[{"seed": i, "step": 10 * i} for i in range(3)],
        info={"arch": "toy", "in_shape": (1, 3, 3), "num_classes": 3})
    c.save(tmp_path / "set")
    d = CheckpointSet.load(tmp_path / "set")
    assert len(d) == 3
    for i in range(3):
        assert sds_equal(d[i], sds[i])
        assert d.run(i) == c.run(i)
        assert d.metrics(i) == c.metrics(i)
        assert d.provenance(i) == c.provenance(i)
        assert torch.equal(d.condition(i), torch.tensor(conds[i]))
    assert torch.equal(d.conditions, c.conditions)
    assert d.condition_dim == 2
    assert d.runs == [0, 0, 1]
    assert d.info == {"arch": "toy", "in_shape": [1, 3, 3], "num_classes": 3}
    assert d.spec == c.spec and d.keys == list(sds[0])
    assert d.spec["bn.num_batches_tracked"] == ((), torch.int64)
    assert d.spec["fc.weight"] == ((3, 4), torch.bfloat16)
    # float params: conv 36 + bn 4 + 4 + fc 12 + 3 (int tensors excluded)
    assert c.num_params == d.num_params == 59
    manifest = json.loads((tmp_path / "set" / MANIFEST).read_text())
    assert manifest["format"] == "paramgen.checkpointset" and manifest["format_version"] == 1
    assert manifest["keys"]["fc.bias"] == {"shape": [3], "dtype": "float16"}
    assert manifest["checkpoints"][1]["file"] == "ckpt_00001.safetensors"
    assert stray_temp_files(tmp_path) == []


_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32,
           torch.uint8, torch.bool]


@settings(max_examples=25, deadline=None)
@given(layout=st.lists(st.tuples(st.lists(st.integers(0, 4), max_size=3),
                                 st.sampled_from(_DTYPES)), min_size=1, max_size=5),
       n=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_round_trip_any_layout(tmp_path_factory, layout, n, seed) -> None:
    """Any shapes (scalars and empty tensors included) and dtypes survive save/load bit-exact."""
    g = torch.Generator().manual_seed(seed)
    sds = []
    for _ in range(n):
        sd = {}
        for j, (shape, dt) in enumerate(layout):
            t = torch.randn(tuple(shape), generator=g) * 10
            sd[f"layer{j}.w"] = t > 0 if dt == torch.bool else t.to(dt)
        sds.append(sd)
    d = tmp_path_factory.mktemp("rt")
    CheckpointSet.from_state_dicts(sds).save(d)
    back = CheckpointSet.load(d)
    assert all(sds_equal(back[i], sds[i]) for i in range(n))
    assert back.spec == {k: (tuple(v.shape), v.dtype) for k, v in sds[0].items()}


def test_sequence_access(tmp_path: Path) -> None:
    sds = [make_sd(i) for i in range(4)]
    c = CheckpointSet.from_state_dicts(sds)
    c.save(tmp_path)
    for s in (c, CheckpointSet.load(tmp_path)):
        assert sds_equal(s[-1], sds[3]) and sds_equal(s[-4], sds[0])
        with pytest.raises(IndexError, match="out of range"):
            s[4]
        with pytest.raises(IndexError):
            s[-5]
        assert [sd["bn.num_batches_tracked"].item() for sd in s] == [0, 7, 14, 21]
        assert s.condition(0) is None and s.conditions is None and s.condition_dim is None
        assert s.runs == [0, 0, 0, 0]
        assert torch.equal(s.stack("conv.weight"), torch.stack([d["conv.weight"] for d in sds]))
        assert s.stack("fc.weight").dtype == torch.bfloat16
        sub = s.subset([3, 1])
        assert len(sub) == 2 and sds_equal(sub[0], sds[3]) and sds_equal(sub[1], sds[1])
        assert len(s[1:3]) == 2
        with pytest.raises(KeyError, match="nope"):
            s.stack("nope")


def test_in_memory_set_is_a_copy() -> None:
    sd = make_sd()
    c = CheckpointSet.from_state_dicts([sd])
    sd["conv.weight"].add_(1.0)  # e.g. the optimizer moving on after model.state_dict()
    assert not torch.equal(c[0]["conv.weight"], sd["conv.weight"])


def test_save_subset_into_its_own_folder(tmp_path: Path) -> None:
    sds = [make_sd(i) for i in range(3)]
    CheckpointSet.from_state_dicts(sds).save(tmp_path)
    # Reordered subset saved over the folder it is read from: must not read overwritten files.
    CheckpointSet.load(tmp_path).subset([2, 0]).save(tmp_path)
    d = CheckpointSet.load(tmp_path)
    assert len(d) == 2 and sds_equal(d[0], sds[2]) and sds_equal(d[1], sds[0])
    assert not (tmp_path / "ckpt_00002.safetensors").exists()  # stale file cleaned up


# ----------------------------------------------------------------------------- import

def test_import_folder_safetensors_and_pickle(tmp_path: Path) -> None:
    sds = [make_sd(i) for i in range(4)]
    save_file(sds[0], str(tmp_path / "a.safetensors"))
    torch.save(sds[1], tmp_path / "b.pt")
    torch.save({"state_dict": sds[2], "epoch": 3}, tmp_path / "c.pth")
    torch.save({"model": sds[3], "optimizer": {"lr": 0.1}}, tmp_path / "d.pt")
    (tmp_path / "notes.txt").write_text("ignored")
    with pytest.raises(ValueError, match=r"allow_pickle=True") as e:
        CheckpointSet.import_folder(tmp_path)
    assert "b.pt" in str(e.value)
    c = CheckpointSet.import_folder(tmp_path, allow_pickle=True)
    assert len(c) == 4
    for i in range(4):
        assert sds_equal(c[i], {k: sds[i][k] for k in c.keys})
    assert [c.provenance(i)["source"] for i in range(4)] == ["a.safetensors", "b.pt", "c.pth",
                                                             "d.pt"]


def test_import_safetensors_only_needs_no_opt_in(tmp_path: Path) -> None:
    for i in (1, 0):
        save_file(make_sd(i), str(tmp_path / f"m{i}.safetensors"))
    c = CheckpointSet.import_folder(tmp_path)
    assert c.provenance(0)["source"] == "m0.safetensors"  # sorted order
    # A safetensors file does not keep the original key order; the values are what matters.
    assert sds_equal(c[0], {k: make_sd(0)[k] for k in c.keys})


def test_import_refuses_pickled_objects(tmp_path: Path) -> None:
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")  # a whole module, not weights
    with pytest.raises(ValueError, match=r"module\.pt.*weights_only"):
        CheckpointSet.import_folder(tmp_path, allow_pickle=True)


def test_import_non_state_dict(tmp_path: Path) -> None:
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match=r"x\.pt.*not a state dict"):
        CheckpointSet.import_folder(tmp_path, allow_pickle=True)


def test_import_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no .safetensors"):
        CheckpointSet.import_folder(tmp_path)


# ----------------------------------------------------------------------------- bad input

def test_keys_differ_names_file_and_keys(tmp_path: Path) -> None:
    a, b = make_sd(0), make_sd(1)
    del b["fc.bias"]
    b["extra.weight"] = torch.zeros(1)
    save_file(a, str(tmp_path / "a.safetensors"))
    save_file(b, str(tmp_path / "b.safetensors"))
    with pytest.raises(ValueError) as e:
        CheckpointSet.import_folder(tmp_path)
    msg = str(e.value)
    assert "b.safetensors" in msg and "missing keys 'fc.bias'" in msg
    assert "extra keys 'extra.weight'" in msg
    with pytest.raises(ValueError, match=r"checkpoint 1: keys differ.*missing keys 'fc.bias'"):
        CheckpointSet.from_state_dicts([a, b])


def test_shape_and_dtype_mismatch() -> None:
    a, b, c = make_sd(0), make_sd(1), make_sd(2)
    b["fc.weight"] = torch.zeros(4, 3, dtype=torch.bfloat16)
    c["bn.weight"] = c["bn.weight"].double()
    with pytest.raises(ValueError, match=r"checkpoint 1: key 'fc.weight' has shape \[4, 3\]"):
        CheckpointSet.from_state_dicts([a, b])
    with pytest.raises(ValueError, match=r"checkpoint 1: key 'bn.weight' has dtype float64"):
        CheckpointSet.from_state_dicts([a, c])


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_values(tmp_path: Path, bad: float) -> None:
    sd = make_sd()
    sd["bn.running_mean"][2] = bad
    with pytest.raises(ValueError, match=r"checkpoint 1: key 'bn.running_mean' holds non-finite"):
        CheckpointSet.from_state_dicts([make_sd(), sd])
    # On disk: a file tampered with after saving is caught when read, naming file and key.
    CheckpointSet.from_state_dicts([make_sd(), make_sd(1)]).save(tmp_path)
    save_file(sd, str(tmp_path / "ckpt_00001.safetensors"))
    c = CheckpointSet.load(tmp_path)
    c[0]
    with pytest.raises(ValueError, match=r"ckpt_00001\.safetensors: key 'bn.running_mean'"):
        c[1]
    with pytest.raises(ValueError, match=r"ckpt_00001\.safetensors: key 'bn.running_mean'"):
        c.validate()


def test_empty_set(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        CheckpointSet.from_state_dicts([])
    CheckpointSet.from_state_dicts([make_sd()]).save(tmp_path)
    m = json.loads((tmp_path / MANIFEST).read_text())
    m["checkpoints"] = []
    (tmp_path / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(ValueError, match=r"manifest\.json: the set is empty"):
        CheckpointSet.load(tmp_path)
    with pytest.raises(ValueError, match="empty"):
        CheckpointSet.from_state_dicts([make_sd()]).subset([])


def test_non_tensor_value() -> None:
    sd = make_sd()
    sd["meta"] = 3  # type: ignore[assignment]
    with pytest.raises(ValueError, match=r"checkpoint 0: key 'meta' holds a int"):
        CheckpointSet.from_state_dicts([sd])


def test_corrupt_and_truncated_files(tmp_path: Path) -> None:
    CheckpointSet.from_state_dicts([make_sd(0), make_sd(1)]).save(tmp_path)
    f = tmp_path / "ckpt_00001.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[:-10])
    with pytest.raises(ValueError, match=r"ckpt_00001\.safetensors: truncated"):
        CheckpointSet.load(tmp_path)
    f.write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match=r"ckpt_00001\.safetensors"):
        CheckpointSet.load(tmp_path)
    save_file({"x": torch.zeros(1)}, str(tmp_path / "stray.safetensors"))
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match=r"bad\.safetensors"):
        CheckpointSet.import_folder(tmp_path)


def test_manifest_problems(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        CheckpointSet.load(tmp_path / "nowhere")
    save_file(make_sd(), str(tmp_path / "raw.safetensors"))
    with pytest.raises(FileNotFoundError, match=r"manifest\.json is missing.*import_folder"):
        CheckpointSet.load(tmp_path)
    d = tmp_path / "set"
    CheckpointSet.from_state_dicts([make_sd(0), make_sd(1)]).save(d)
    good = json.loads((d / MANIFEST).read_text())

    def with_manifest(**changes) -> None:
        (d / MANIFEST).write_text(json.dumps({**good, **changes}))

    with_manifest(format_version=99)
    with pytest.raises(ValueError, match=r"manifest\.json: unknown 'format_version' 99"):
        CheckpointSet.load(d)
    with_manifest(format="something.else")
    with pytest.raises(ValueError, match="'format' is 'something.else'"):
        CheckpointSet.load(d)
    (d / MANIFEST).write_text("{not json")
    with pytest.raises(ValueError, match=r"manifest\.json: unreadable manifest"):
        CheckpointSet.load(d)
    with_manifest(checkpoints=good["checkpoints"] + [dict(good["checkpoints"][0],
                                                          file="ckpt_00009.safetensors")])
    with pytest.raises(FileNotFoundError, match=r"ckpt_00009\.safetensors.*listed in the manifest"):
        CheckpointSet.load(d)
    keys = dict(good["keys"])
    keys["fc.bias"] = {"shape": [4], "dtype": "float16"}
    with_manifest(keys=keys)
    with pytest.raises(ValueError, match=r"ckpt_00000\.safetensors: key 'fc.bias' has shape \[3\]"):
        CheckpointSet.load(d)
    with_manifest(condition_dim=2)
    with pytest.raises(ValueError, match=r"checkpoints\[0\] \(ckpt_00000\.safetensors\): condition "
                                         r"is missing"):
        CheckpointSet.load(d)
    cks = [dict(e) for e in good["checkpoints"]]
    cks[0]["condition"], cks[1]["condition"] = [1.0, 0.0], [1.0]
    with_manifest(condition_dim=2, checkpoints=cks)
    with pytest.raises(ValueError, match=r"checkpoints\[1\].*condition has 1 values, expected "
                                         r"condition_dim=2"):
        CheckpointSet.load(d)


def test_conditions_validation() -> None:
    sds = [make_sd(0), make_sd(1)]
    with pytest.raises(ValueError, match="conditions has 3 rows for 2 checkpoints"):
        CheckpointSet.from_state_dicts(sds, conditions=[[0.0], [1.0], [2.0]])
    with pytest.raises(ValueError, match="different lengths"):
        CheckpointSet.from_state_dicts(sds, conditions=[[0.0, 1.0], [1.0]])
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        CheckpointSet.from_state_dicts(sds, conditions=torch.zeros(2))
    with pytest.raises(ValueError, match="row 1 is None"):
        CheckpointSet.from_state_dicts(sds, conditions=[[0.0], None])
    with pytest.raises(ValueError, match="runs has 1 entries for 2"):
        CheckpointSet.from_state_dicts(sds, runs=[0])
    c = CheckpointSet.from_state_dicts(sds, conditions=torch.tensor([[1, 0], [0, 1]]))
    assert c.conditions.dtype == torch.float32 and c.condition_dim == 2


def test_non_json_metrics_rejected() -> None:
    with pytest.raises(ValueError, match=r"metrics\[0\].*not finite"):
        CheckpointSet.from_state_dicts([make_sd()], metrics=[{"loss": float("nan")}])
    c = CheckpointSet.from_state_dicts([make_sd()], metrics=[{"acc": torch.tensor(0.5)}])
    assert c.metrics(0) == {"acc": 0.5}


# ----------------------------------------------------------------------------- atomic writes

def test_failed_write_leaves_old_file_and_no_temp(tmp_path: Path, monkeypatch) -> None:
    CheckpointSet.from_state_dicts([make_sd(0)]).save(tmp_path)
    before = (tmp_path / "ckpt_00000.safetensors").read_bytes()
    import paramgen.io.atomic as pio  # the module whose save_file the atomic write calls

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(pio, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        CheckpointSet.from_state_dicts([make_sd(5)]).save(tmp_path)
    assert (tmp_path / "ckpt_00000.safetensors").read_bytes() == before
    assert stray_temp_files(tmp_path) == []
    assert sds_equal(CheckpointSet.load(tmp_path)[0], make_sd(0))


# ----------------------------------------------------------------------------- writer

def test_writer_appends_and_resumes(tmp_path: Path) -> None:
    d = tmp_path / "w"
    w = CheckpointWriter(d, info={"arch": "toy"})
    assert len(w) == 0
    with pytest.raises(ValueError, match="empty"):
        CheckpointSet.load(d)  # a manifest with the settings exists, but no checkpoint yet
    for i in range(2):
        w.add(make_sd(i), run=0, condition=[1.0, float(i)], metrics={"accuracy": 0.9},
              provenance={"index": i})
    assert len(CheckpointSet.load(d)) == 2  # readable after every add
    w._lock.release()  # a crash: the operating system drops a dead writer's lock
    w2 = CheckpointWriter(d, info={"arch": "toy"})
    assert len(w2) == 2 and [p["index"] for p in w2.provenances] == [0, 1]
    assert w2.provenance(1) == {"index": 1}
    w2.add(make_sd(2), run=1, condition=[0.0, 2.0], provenance={"index": 2}, flush=False)
    assert len(CheckpointSet.load(d)) == 2  # not flushed yet
    w2.flush()
    c = CheckpointSet.load(d)
    assert len(c) == 3 and c.runs == [0, 0, 1] and sds_equal(c[2], make_sd(2))
    assert torch.equal(c.condition(2), torch.tensor([0.0, 2.0]))
    assert stray_temp_files(d) == []


def test_writer_validates(tmp_path: Path) -> None:
    w = CheckpointWriter(tmp_path, info={"arch": "toy"})
    w.add(make_sd(0), condition=[1.0, 0.0])
    bad = make_sd(1)
    del bad["fc.bias"]
    with pytest.raises(ValueError, match=r"ckpt_00001\.safetensors: keys differ.*'fc.bias'"):
        w.add(bad, condition=[1.0, 0.0])
    with pytest.raises(ValueError, match="condition has 3 values, expected condition_dim=2"):
        w.add(make_sd(1), condition=[1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="condition is missing"):
        w.add(make_sd(1))
    nan = make_sd(1)
    nan["conv.weight"][0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="'conv.weight' holds non-finite"):
        w.add(nan, condition=[1.0, 0.0])
    assert len(w) == 1
    w.close()
    with pytest.raises(ValueError, match=r"other settings \(arch: 'toy' there, 'other' now\)"):
        CheckpointWriter(tmp_path, info={"arch": "other"})


def test_writer_unflushed_file_is_overwritten(tmp_path: Path) -> None:
    w = CheckpointWriter(tmp_path)
    w.add(make_sd(0))
    w.add(make_sd(1), flush=False)  # simulated crash: file written, manifest not
    w._lock.release()  # ... and the dead writer's lock dropped
    w2 = CheckpointWriter(tmp_path)
    assert len(w2) == 1
    w2.add(make_sd(2))
    c = CheckpointSet.load(tmp_path)
    assert len(c) == 2 and sds_equal(c[1], make_sd(2))
    assert sorted(os.listdir(tmp_path)) == [LOCK_FILE, "ckpt_00000.safetensors",
                                            "ckpt_00001.safetensors", MANIFEST]


def test_safetensors_stream_writer_order_dtype_and_atomicity(tmp_path):
    from safetensors.torch import load_file

    from paramgen.io import SafetensorsStreamWriter

    path = tmp_path / "s.safetensors"
    entries = [("a", [2, 3], torch.float32), ("e", [0], torch.float32), ("b", [4], torch.int64)]
    with pytest.raises(ValueError, match="'b' while 'a' is due"):
        with SafetensorsStreamWriter(path, entries) as w:
            w.write("b", torch.arange(4))
    assert list(tmp_path.iterdir()) == []  # no torn or temporary file left behind
    with pytest.raises(ValueError, match="float32 in the header, got data of torch.float64"):
        with SafetensorsStreamWriter(path, entries) as w:
            w.write("a", torch.zeros(6, dtype=torch.float64))
    w = SafetensorsStreamWriter(path, entries)
    w.write("a", torch.ones(4))
    with pytest.raises(ValueError, match="closed before 'a' was written"):
        w.close()
    assert list(tmp_path.iterdir()) == []
    with SafetensorsStreamWriter(path, entries, {"format": "pt"}) as w:
        w.write("a", torch.ones(4))
        w.write("a", torch.zeros(2))
        w.write("b", torch.arange(4))
    got = load_file(str(path))
    assert torch.equal(got["a"], torch.tensor([[1.0, 1, 1], [1, 0, 0]]))
    assert got["e"].shape == (0,) and torch.equal(got["b"], torch.arange(4))


# ----------------------------------------------------------------------------- importers, reader

def test_the_core_does_not_import_the_adapters_it_can_import_from() -> None:
    """CheckpointSet.import_peft resolves paramgen.adapters on use (issue 22: no import circle)."""
    import subprocess
    import sys

    code = ("import sys, paramgen.checkpoints; "
            "print(sorted(m for m in sys.modules if m.startswith('paramgen.adapters')))")
    env = {**os.environ, "PYTHONPATH": str(Path(paramgen.__file__).parents[1])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_importer_registry(tmp_path: Path) -> None:
    from paramgen.checkpoints import IMPORTERS, get_importer, register_importer

    assert IMPORTERS["peft"] == "paramgen.adapters.importer:import_peft"
    from paramgen.adapters.importer import import_peft

    assert get_importer("peft") is import_peft
    with pytest.raises(KeyError, match="no checkpoint importer named 'nope'.*peft"):
        get_importer("nope")
    with pytest.raises(ValueError, match="module:function"):
        register_importer("x", "no_colon_here")

    def from_list(sds):
        return CheckpointSet.from_state_dicts(sds)

    register_importer("test-list", from_list)
    try:
        assert len(get_importer("test-list")([make_sd(0), make_sd(1)])) == 2
    finally:  # leave the global registry as it was
        IMPORTERS.pop("test-list")
        from paramgen.checkpoints import importers

        importers._LOADED.pop("test-list")


def test_public_reader_names_the_file(tmp_path: Path) -> None:
    from paramgen.checkpoints import read_safetensors, read_safetensors_header

    save_file({"a": torch.ones(3, 2)}, str(tmp_path / "m.safetensors"))
    assert read_safetensors_header(tmp_path / "m.safetensors") == {"a": ((3, 2), torch.float32)}
    assert torch.equal(read_safetensors(tmp_path / "m.safetensors")["a"], torch.ones(3, 2))
    data = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "t.safetensors").write_bytes(data[:-4])
    with pytest.raises(CheckpointError, match=r"t\.safetensors: truncated file: key 'a'"):
        read_safetensors_header(tmp_path / "t.safetensors")
    with pytest.raises(CheckpointError, match=r"t\.safetensors: unreadable safetensors"):
        read_safetensors(tmp_path / "t.safetensors")
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        read_safetensors(tmp_path / "missing.safetensors")
