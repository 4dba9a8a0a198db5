"""Bad input and environment faults through the command line: one clear line, never a traceback.

Each row is a command a careless or hostile user might type, the exit status it must end with,
and words its one-line error must contain (the file, key, argument or value at fault). Rows run
in-process through `paramgen.cli.main`; every row also checks that nothing it was pointed at was
deleted.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from paramgen import zoo
from paramgen.checkpoints import CheckpointSet
from paramgen.cli import main

NOPROG = ["--no-progress"]


def _tiny_set(folder: Path, n: int = 3) -> Path:
    sds = [zoo.create("mlp", (1, 8, 8), 10, seed=i, hidden=[4]).state_dict() for i in range(n)]
    CheckpointSet.from_state_dicts(sds, info={"arch": "mlp"}).save(folder)
    return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """Files and folders the rows point at (shared: every row checks it changed nothing)."""
    tmp_path = tmp_path_factory.mktemp("world")
    w = {"tmp": tmp_path}
    w["file"] = tmp_path / "plain.txt"
    w["file"].write_text("a user's file\n")
    w["foreign"] = tmp_path / "foreign"
    w["foreign"].mkdir()
    (w["foreign"] / "thesis.tex").write_text("months of work\n")
    w["ckpts"] = _tiny_set(tmp_path / "ckpts")
    # A manifest whose fields were edited by hand, one folder per fault.
    for name, edit in [
        ("bad_run", lambda m: m["checkpoints"][0].update(run="first")),
        ("bad_shape", lambda m: m["keys"][next(iter(m["keys"]))].update(shape=[-3, 2])),
        ("bad_dtype", lambda m: m["keys"][next(iter(m["keys"]))].update(dtype="float128")),
        ("escape", lambda m: m["checkpoints"][0].update(file="../plain.txt")),
        ("bad_metrics", lambda m: m["checkpoints"][0].update(metrics=[1, 2])),
        ("bad_condition", lambda m: m["checkpoints"][0].update(condition="0101")),
        ("dup_file", lambda m: m["checkpoints"][1].update(file=m["checkpoints"][0]["file"])),
        ("bool_version", lambda m: m.update(format_version=True)),
    ]:
        d = _tiny_set(tmp_path / name)
        manifest = json.loads((d / "manifest.json").read_text())
        edit(manifest)
        (d / "manifest.json").write_text(json.dumps(manifest))
        w[name] = d
    w["nan_manifest"] = _tiny_set(tmp_path / "nan_manifest")
    path = w["nan_manifest"] / "manifest.json"
    path.write_text(path.read_text().replace('"info": {', '"info": {"x": NaN, ', 1))
    w["truncated"] = _tiny_set(tmp_path / "truncated")
    f = w["truncated"] / "ckpt_00001.safetensors"
    f.write_bytes(f.read_bytes()[:-40])
    w["cifar"] = tmp_path / "cifar"
    w["cifar"].mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(w["cifar"] / name, "wb") as fh:
            pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}, fh)
    return w


# (argv with {name} placeholders, expected exit status, words the error must contain)
ROWS = [
    # output paths
    (["collect", "--out", "{file}", "-n", "2", *NOPROG], 2, ["plain.txt", "is a file"]),
    (["collect", "--out", "{file}/sub", "-n", "2", *NOPROG], 2, ["plain.txt", "not a folder"]),
    (["collect", "--out", "{foreign}", "-n", "2", *NOPROG], 2, ["foreign", "not made by paramgen",
                                                                 "--overwrite"]),
    (["demo", "--out", "{foreign}"], 2, ["foreign", "not made by paramgen"]),
    (["demo", "--fresh", "--out", "{foreign}"], 2, ["foreign", "not made by paramgen"]),
    (["sample", "--gen", "{ckpts}", "--out", "{foreign}", "-n", "2"], 2, ["config.json"]),
    (["train", "--ckpts", "{ckpts}", "--out", "{file}"], 2, ["plain.txt", "is a file"]),
    (["collect", "--out", "", *NOPROG], 2, ["output path is empty"]),
    (["train", "--ckpts", "{file}", "--out", "{tmp}/g"], 2, ["plain.txt is a file",
                                                          "CheckpointSet is a folder"]),
    # names and values
    (["collect", "--data", "imagenet", "--out", "{tmp}/a", *NOPROG], 2, ["imagenet", "digits"]),
    (["collect", "--arch", "resnet-9000", "--out", "{tmp}/a", *NOPROG], 2, ["resnet-9000",
                                                                            "cnn-s"]),
    (["collect", "--arch", "vit-mini", "--hidden", "8", "--out", "{tmp}/a", *NOPROG], 2,
     ["vit-mini", "'hidden'"]),
    (["collect", "--arch", "cnn-s", "--hidden", "8,8", "--out", "{tmp}/a", *NOPROG], 2,
     ["--hidden 8,8", "one width"]),
    (["collect", "--hidden", "a,b", "--out", "{tmp}/a", *NOPROG], 2, ["--hidden", "integers"]),
    (["collect", "--tasks", "0000000000", "--out", "{tmp}/a", *NOPROG], 2, ["0000000000",
                                                                            "all 0"]),
    (["collect", "--tasks", "0101", "--out", "{tmp}/a", *NOPROG], 2, ["0101", "length 4"]),
    (["collect", "--tasks", "5000", "--out", "{tmp}/a", *NOPROG], 2, ["5000", "0..1022"]),
    (["collect", "--tasks", "@{tmp}/missing.txt", "--out", "{tmp}/a", *NOPROG], 2,
     ["missing.txt", "does not exist"]),
    (["collect", "--tasks", "@{file}", "--out", "{tmp}/a", *NOPROG], 2, ["entry 0", "'a'"]),
    (["collect", "--tasks", "@{foreign}", "--out", "{tmp}/a", *NOPROG], 2, ["foreign",
                                                                            "is a folder"]),
    (["collect", "--task", "01x1010101", "--out", "{tmp}/a", *NOPROG], 2, ["01x1010101",
                                                                           "entry 2"]),
    (["collect", "--task", "0101010101", "--tasks", "all", "--out", "{tmp}/a"], 2,
     ["--task and --tasks"]),
    (["collect", "-n", "0", "--out", "{tmp}/a", *NOPROG], 2, ["n=0"]),
    (["collect", "--lr", "nan", "--out", "{tmp}/a", *NOPROG], 2, ["lr=nan"]),
    (["collect", "--lr", "-1", "--out", "{tmp}/a", *NOPROG], 2, ["lr=-1"]),
    (["collect", "--epochs", "-2", "--out", "{tmp}/a", *NOPROG], 2, ["epochs=-2"]),
    (["collect", "--batch-size", "0", "--out", "{tmp}/a", *NOPROG], 2, ["batch_size=0"]),
    (["collect", "--tasks", "3", "--per-task", "0", "--out", "{tmp}/a", *NOPROG], 2,
     ["per_task=0"]),
    (["collect", "--device", "tpu9", "--out", "{tmp}/a", *NOPROG], 2, ["--device 'tpu9'"]),
    (["collect", "--device", "cuda:99", "--out", "{tmp}/a", *NOPROG], 2, ["--device 'cuda:99'"]),
    (["collect", "--arch", "mlp", "--trainable", "last-norm-2", "--out", "{tmp}/a", *NOPROG], 2,
     ["last-norm-2", "normalization layers"]),
    (["collect", "--data", "cifar10", "--data-root", "{cifar}", "--out", "{tmp}/a", *NOPROG], 2,
     ["pickles", "--allow-pickle"]),
    (["collect", "--arch", "mlp", "--out", "{ckpts}", "-n", "2", *NOPROG], 2, ["other settings"]),
    (["sample", "--gen", "{tmp}/nowhere", "--out", "{tmp}/s"], 2, ["nowhere",
                                                                  "not a saved generator"]),
    (["sample", "--gen", "{tmp}/nowhere", "--out", "{tmp}/s", "-n", "0"], 2, ["-n", "0"]),
    (["sample", "--gen", "{tmp}/nowhere", "--out", "{tmp}/s", "--condition", "01a"], 2,
     ["--condition '01a'"]),
    (["sample", "--gen", "{tmp}/nowhere", "--out", "{tmp}/s", "--condition", "nan,1"], 2,
     ["nan", "not a usable condition"]),
    (["sample", "--gen", "{tmp}/nowhere", "--out", "{tmp}/s", "--condition", "1e300,0"], 2,
     ["1e+300"]),
    # damaged or edited collections
    (["train", "--ckpts", "{tmp}/none", "--out", "{tmp}/g"], 2, ["none", "does not exist"]),
    (["train", "--ckpts", "{foreign}", "--out", "{tmp}/g"], 2, ["manifest.json", "missing"]),
    (["train", "--ckpts", "{bad_run}", "--out", "{tmp}/g"], 2, ["checkpoints[0]", "'run'"]),
    (["train", "--ckpts", "{bad_shape}", "--out", "{tmp}/g"], 2, ["'shape'", "[-3, 2]"]),
    (["train", "--ckpts", "{bad_dtype}", "--out", "{tmp}/g"], 2, ["float128"]),
    (["train", "--ckpts", "{escape}", "--out", "{tmp}/g"], 2, ["../plain.txt", "inside"]),
    (["train", "--ckpts", "{bad_metrics}", "--out", "{tmp}/g"], 2, ["'metrics'"]),
    (["train", "--ckpts", "{bad_condition}", "--out", "{tmp}/g"], 2, ["'condition'"]),
    (["train", "--ckpts", "{dup_file}", "--out", "{tmp}/g"], 2, ["already listed"]),
    (["train", "--ckpts", "{bool_version}", "--out", "{tmp}/g"], 2, ["format_version"]),
    (["train", "--ckpts", "{nan_manifest}", "--out", "{tmp}/g"], 2, ["NaN"]),
    (["train", "--ckpts", "{truncated}", "--out", "{tmp}/g"], 2, ["ckpt_00001", "truncated"]),
]


def _fill(argv: list[str], world: dict[str, Path]) -> list[str]:
    return [a.format(**{k: str(v) for k, v in world.items()}) for a in argv]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.startswith(".paramgen")}


@pytest.mark.parametrize("argv,status,words", ROWS, ids=[" ".join(r[0][:3]) for r in ROWS])
def test_bad_input_gives_one_clear_line(argv, status, words, world, capsys) -> None:
    before = _snapshot(world["tmp"])
    rc = main(_fill(argv, world))
    err = capsys.readouterr().err
    assert rc == status, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"paramgen {argv[0]}: error: "), err
    for word in words:
        assert word.format(**{k: str(v) for k, v in world.items()}) in lines[0], (word, lines[0])
    after = _snapshot(world["tmp"])
    assert {k: v for k, v in after.items() if k in before} == before  # nothing lost or changed


def test_debug_shows_the_traceback(world, capsys) -> None:
    rc = main(["--debug", "collect", "--out", str(world["file"])])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" in err and "is a file" in err


def test_unexpected_errors_say_so_and_exit_1(monkeypatch, capsys) -> None:
    import paramgen.commands.collect as cmd

    def boom(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(cmd, "run", boom)
    assert main(["collect", "--out", "x"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == ("paramgen collect: error: unexpected ZeroDivisionError: a bug (rerun with "
                   "--debug for the traceback and please report it)")


@pytest.mark.parametrize("exc,words", [
    (OSError(28, "No space left on device", "/data/out/model.safetensors"),
     ["no space left", "/data/out/model.safetensors"]),
    (PermissionError(13, "Permission denied", "/data/out"), ["permission denied", "/data/out"]),
    (OSError(30, "Read-only file system", "/mnt/ro/x"), ["read-only", "/mnt/ro/x"]),
    (NotADirectoryError(20, "Not a directory", "a/b"), ["a/b", "not a folder"]),
    (IsADirectoryError(21, "Is a directory", "out/.m.safetensors.x1.tmp", None, "out/m"),
     ["out/m is a folder"]),
    (MemoryError(), ["out of memory"]),
    (KeyError("key 'fc.weight' missing"), ["key 'fc.weight' missing"]),
])
def test_environment_faults_become_messages(monkeypatch, capsys, exc, words) -> None:
    import paramgen.commands.sample as cmd

    def fail(args):
        raise exc

    monkeypatch.setattr(cmd, "run", fail)
    assert main(["sample", "--gen", "g", "--out", "o"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    for w in words:
        assert w in err


def test_disk_full_during_a_real_write_is_one_line(tmp_path, monkeypatch, capsys) -> None:
    """A write that fails mid-way (ENOSPC from the OS) leaves no torn file and one message."""
    import errno
    import os

    from paramgen import io

    real_replace = os.replace

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))

    monkeypatch.setattr(os, "replace", full)
    sds = [{"w": torch.ones(3)}]
    with pytest.raises(OSError):
        CheckpointSet.from_state_dicts(sds).save(tmp_path / "c")
    monkeypatch.setattr(os, "replace", real_replace)
    assert not any(p.suffix == ".tmp" for p in (tmp_path / "c").iterdir())  # no torn leftovers
    assert "no space left" in io.describe_os_error(OSError(errno.ENOSPC, "x", "f"))
