"""Checkpoint collection: single-task runs, partial continuation, resume, task grids, command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import paramgen.collect as pc
import paramgen.collect.runs as pc_runs
from paramgen.data import resolve_tasks
from paramgen.checkpoints import CheckpointSet
from paramgen.cli import main
from paramgen.training import Stage
from paramgen import train_state

# Tiny but real: an MLP on digits, 2 epochs, 4 checkpoints over 8 continuation steps.
TINY = dict(arch="mlp", data="digits", n=4, epochs=2, extra_steps=8, progress=False,
            model_kwargs={"hidden": [16]})


def same(a: CheckpointSet, b: CheckpointSet) -> bool:
    return len(a) == len(b) and all(
        torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in a.keys)


def test_collect_tiny_end_to_end(tmp_path: Path) -> None:
    c = pc.collect(out=tmp_path, **TINY)
    assert len(c) == 4 and c.runs == [0] * 4 and c.condition_dim is None
    info = c.info
    assert info["arch"] == "mlp" and info["data"] == "digits"
    assert info["in_shape"] == [1, 8, 8] and info["num_classes"] == 10
    assert info["metric"] == "accuracy" and info["trainable"] == "all"
    assert info["model_kwargs"] == {"hidden": [16]}
    steps = [c.provenance(i)["continuation_step"] for i in range(4)]
    assert steps == [2, 4, 6, 8]  # uniform over the continuation
    assert [c.provenance(i)["index"] for i in range(4)] == [0, 1, 2, 3]
    assert all(c.provenance(i)["seed"] == 0 for i in range(4))
    assert all(0.5 < c.metrics(i)["accuracy"] <= 1.0 for i in range(4))
    first = c.stack(c.keys[0])
    assert not torch.equal(first[0], first[3])  # the continuation moved the weights
    assert not (tmp_path / ".resume").exists()  # resume state removed when the run finished
    # A rebuilt model accepts every checkpoint.
    from paramgen import zoo

    model = zoo.create("mlp", (1, 8, 8), 10, **info["model_kwargs"])
    model.load_state_dict(c[2])
    # Same call again: nothing to do, same folder.
    again = pc.collect(out=tmp_path, **TINY)
    assert same(c, again)


def test_collect_resume_after_interrupt_in_continuation(tmp_path: Path) -> None:
    ref = pc.collect(out=tmp_path / "ref", **TINY)

    def stop(event: dict) -> None:
        if event["index"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pc.collect(out=tmp_path / "run", callback=stop, **TINY)
    part = CheckpointSet.load(tmp_path / "run")
    assert len(part) == 2
    # The run's training state: the Engine's safetensors + JSON, no pickle, no .pt file.
    workdir = pc_runs.resume_dir(tmp_path / "run", 0)
    assert train_state.exists(workdir)
    assert not list((tmp_path / "run").rglob("*.pt"))
    seen = []
    done = pc.collect(out=tmp_path / "run", callback=seen.append, **TINY)
    assert [e["index"] for e in seen] == [2, 3]  # finished checkpoints are not redone
    assert same(done, ref)  # and the resumed run is the uninterrupted one, bit for bit
    assert not (tmp_path / "run" / ".resume").exists()


def test_collect_resume_after_interrupt_in_pretraining(tmp_path: Path, monkeypatch) -> None:
    ref = pc.collect(out=tmp_path / "ref", **TINY)
    calls = {"n": 0}
    real = Stage.lr_at

    def flaky(self, step):
        calls["n"] += 1
        if calls["n"] == 60:  # mid-way through the 2 * 45 pretraining steps
            raise KeyboardInterrupt
        return real(self, step)

    monkeypatch.setattr(pc_runs, "_RESUME_EVERY_S", 1e-9)  # save the state after every step
    monkeypatch.setattr(Stage, "lr_at", flaky)
    with pytest.raises(KeyboardInterrupt):
        pc.collect(out=tmp_path / "run", **TINY)
    state = train_state.load(pc_runs.resume_dir(tmp_path / "run", 0))
    assert state["step"] == 59 and state["identity"]["run"] == 0
    monkeypatch.setattr(Stage, "lr_at", real)
    assert same(pc.collect(out=tmp_path / "run", **TINY), ref)


def test_names_in_any_case_get_the_dataset_defaults(tmp_path: Path) -> None:
    """Issue 14: `--data Digits` skipped digits' defaults (77% instead of 97%)."""
    c = pc.collect(out=tmp_path, **{**TINY, "arch": "MLP", "data": "Digits", "n": 2,
                                    "extra_steps": 2})
    assert c.info["data"] == "digits" and c.info["arch"] == "mlp"
    assert c.info["lr"] == pc.DEFAULTS["digits"]["lr"]
    assert c.info["batch_size"] == pc.DEFAULTS["digits"]["batch_size"]
    # The same folder resumes under either spelling.
    again = pc.collect(out=tmp_path, **{**TINY, "n": 2, "extra_steps": 2})
    assert same(c, again)


def test_collect_refuses_other_settings(tmp_path: Path) -> None:
    pc.collect(out=tmp_path, **TINY)
    with pytest.raises(ValueError, match=r"other settings.*epochs: 2 there, 3 now"):
        pc.collect(out=tmp_path, **{**TINY, "epochs": 3})


def test_collect_runs_and_more_runs_later(tmp_path: Path) -> None:
    one = pc.collect(out=tmp_path, **{**TINY, "n": 2, "extra_steps": 2})
    two = pc.collect(out=tmp_path, runs=2, **{**TINY, "n": 2, "extra_steps": 2})
    assert two.runs == [0, 0, 1, 1]
    assert [two.provenance(i)["seed"] for i in range(4)] == [0, 0, 1, 1]
    assert same(one, two.subset([0, 1]))  # run 0 kept, not redone
    assert not torch.equal(two.stack(two.keys[0])[0], two.stack(two.keys[0])[2])


def test_collect_partial_last_norm(tmp_path: Path) -> None:
    c = pc.collect(arch="resnet-mini", data="digits", out=tmp_path, n=3, epochs=1,
                   extra_steps=6, trainable="last-norm-2", progress=False)
    varying = set(c.info["trainable_keys"])
    assert {"layer2.bn1.weight", "layer2.bn2.bias", "layer2.bn2.running_mean"} <= varying
    assert "bn1.running_var" in c.keys  # BatchNorm statistics are part of every checkpoint
    for key in c.keys:
        s = c.stack(key)
        moved = not all(torch.equal(s[0], s[i]) for i in range(len(c)))
        if key in varying and key.endswith(("weight", "running_mean")):
            assert moved, key
        if key not in varying:
            assert not moved, f"{key} changed but should be frozen"


def test_trainable_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"trainable prefix 'nothing\.' matches no parameter"):
        pc.collect(out=tmp_path, trainable=["nothing."], **TINY)
    with pytest.raises(ValueError, match=r"last-norm-2.*has 0 \(none\)"):
        pc.collect(out=tmp_path / "b", trainable="last-norm-2", **TINY)


def test_collect_single_binary_task(tmp_path: Path) -> None:
    c = pc.collect(out=tmp_path, task="0101010101", **{**TINY, "n": 2, "extra_steps": 2})
    assert c.info["metric"] == "balanced_accuracy" and c.info["num_classes"] == 2
    assert c.condition_dim == 10
    assert c.condition(0).tolist() == [0, 1] * 5
    assert c.provenance(1)["task"] == "0101010101"
    assert c.metrics(0)["balanced_accuracy"] > 0.7


GRID = dict(arch="mlp", data="digits", per_task=2, epochs=30, hidden=[8], progress=False)


def test_grid_four_tasks_two_workers_and_resume(tmp_path: Path) -> None:
    tasks = ["0000000001", "0101010101", "1100110011", "1111100000"]
    c = pc.collect_tasks(out=tmp_path, tasks=tasks[:2], workers=1, **GRID)
    assert len(c) == 4
    c = pc.collect_tasks(out=tmp_path, tasks=tasks, workers=2, chunk_size=1, **GRID)
    assert len(c) == 8
    assert [c.provenance(i)["task"] for i in range(8)] == [t for t in tasks for _ in range(2)]
    assert [c.provenance(i)["index"] for i in range(8)] == [0, 1] * 4
    for i in range(8):
        bits = c.provenance(i)["task"]
        assert c.condition(i).tolist() == [float(b) for b in bits]
        assert c.run(i) == 0  # one shared initialisation for every task
        assert 0.5 <= c.metrics(i)["balanced_accuracy"] <= 1.0
    info = c.info
    assert info["metric"] == "balanced_accuracy" and info["num_classes"] == 2
    assert info["model_kwargs"] == {"hidden": [8]}
    # Same task trained in-process and in a worker gives the same weights (seed is per task).
    solo = pc.collect_tasks(out=tmp_path / "solo", tasks=tasks[2:3], workers=1, **GRID)
    assert all(torch.equal(solo[0][k], c[4][k]) for k in c.keys)
    # Everything done: a rerun trains nothing and changes nothing.
    mtime = (tmp_path / "manifest.json").stat().st_mtime_ns
    assert same(pc.collect_tasks(out=tmp_path, tasks=tasks, workers=2, **GRID), c)
    assert (tmp_path / "manifest.json").stat().st_mtime_ns == mtime


def test_grid_task_selection_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="0000000000"):
        pc.collect_tasks(out=tmp_path, tasks=["0000000000"], **GRID)
    with pytest.raises(ValueError, match="length 3"):
        pc.collect_tasks(out=tmp_path, tasks="011", **GRID)
    assert len(resolve_tasks(5, 10, seed=0)) == 5
    assert len(resolve_tasks("all", 10, seed=0)) == 1022


def test_grid_finetune_lr(tmp_path: Path) -> None:
    """The fine-tuning rate from the shared model is its own setting: the shared start (trained
    at lr) is the same, a slower fine-tune moves each task less from it, the folder records the
    rate, and a grid without it keeps the settings it had (old folders still resume)."""
    task = ["0101010101"]
    default = pc.collect_tasks(out=tmp_path / "default", tasks=task, workers=1, **GRID)
    assert "finetune_lr" not in default.info
    slow = pc.collect_tasks(out=tmp_path / "slow", tasks=task, workers=1, finetune_lr=1e-5,
                            **GRID)
    assert slow.info["finetune_lr"] == 1e-5
    fast = pc.collect_tasks(out=tmp_path / "fast", tasks=task, workers=1, finetune_lr=0.05,
                            **GRID)
    start = pc.collect_tasks(out=tmp_path / "start", tasks=task, workers=1, finetune_lr=1e-9,
                             **GRID)

    def moved(c: CheckpointSet) -> float:  # the hidden layer only: the 2-way head is new
        key = next(k for k in c.keys if k.endswith("weight"))
        return float((c[0][key] - start[0][key]).abs().max())

    assert moved(slow) < moved(default) < moved(fast)
    with pytest.raises(ValueError, match="other settings|finetune_lr"):
        pc.collect_tasks(out=tmp_path / "slow", tasks=task, workers=1, finetune_lr=0.05, **GRID)
    with pytest.raises(ValueError, match="finetune_lr must be a positive"):
        pc.collect_tasks(out=tmp_path / "bad", tasks=task, finetune_lr=0.0, **GRID)
    with pytest.raises(ValueError, match="warm"):
        pc.collect_tasks(out=tmp_path / "cold", tasks=task, finetune_lr=0.01, warm_start=False,
                         **GRID)


# ----------------------------------------------------------------------------- command line

def test_cli_collect_and_summary(tmp_path: Path, capsys) -> None:
    rc = main(["collect", "--arch", "mlp", "--hidden", "16", "--data", "digits", "-n", "3",
               "--runs", "1", "--epochs", "1", "--out", str(tmp_path / "c"), "--no-progress"])
    assert rc == 0
    captured = capsys.readouterr()
    out = captured.out
    assert captured.err == ""  # --no-progress: no bars on stderr
    assert "3 checkpoints" in out and "test accuracy: mean" in out and "time:" in out
    assert len(CheckpointSet.load(tmp_path / "c")) == 3


def test_cli_task_grid_from_file(tmp_path: Path, capsys) -> None:
    f = tmp_path / "tasks.txt"
    f.write_text("# two tasks\n0101010101\n1000000000\n")
    rc = main(["collect", "--tasks", f"@{f}", "--per-task", "1", "--epochs", "20", "--hidden", "8",
               "--workers", "1", "--finetune-lr", "0.003", "--out", str(tmp_path / "g"),
               "--no-progress"])
    assert rc == 0
    assert "balanced_accuracy" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "g" / "manifest.json").read_text())
    assert manifest["info"]["finetune_lr"] == 0.003
    assert [e["provenance"]["task"] for e in manifest["checkpoints"]] == ["0101010101",
                                                                          "1000000000"]


def test_cli_errors_and_help(tmp_path: Path, capsys) -> None:
    assert main(["collect", "--arch", "mlp", "--trainable", "zzz.", "--epochs", "1",
                 "--out", str(tmp_path), "--no-progress"]) == 2
    assert "zzz." in capsys.readouterr().err
    assert main(["collect", "--hidden", "a,b", "--out", str(tmp_path)]) == 2
    assert main(["collect", "--lora", "r=2", "--tasks", "2", "--finetune-lr", "0.01",
                 "--out", str(tmp_path / "lora")]) == 2
    assert "--finetune-lr" in capsys.readouterr().err and not (tmp_path / "lora").exists()
    with pytest.raises(SystemExit):
        main(["collect", "--help"])
    text = capsys.readouterr().out
    for opt in ["--arch", "--data", "--num", "--runs", "--epochs", "--trainable", "--lr", "--seed",
                "--out", "--tasks", "--per-task", "--workers", "--hidden"]:
        assert opt in text


@pytest.mark.slow
def test_cli_survives_kill_9(tmp_path: Path) -> None:
    """A real crash: SIGKILL mid-collection, then the same command finishes the job."""
    out = tmp_path / "k"
    cmd = [sys.executable, "-m", "paramgen.cli", "collect", "--arch", "mlp", "--hidden", "16",
           "-n", "40", "--runs", "1", "--epochs", "2", "--extra-steps", "400", "--out", str(out),
           "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    n = 0
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            n = len(json.loads((out / "manifest.json").read_text())["checkpoints"])
        except (OSError, ValueError):
            n = 0
        if n >= 3:
            break
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.skip("collection finished before it could be killed (machine too fast)")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = len(CheckpointSet.load(out))
    assert 3 <= partial < 40
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    c = CheckpointSet.load(out)
    assert len(c) == 40 and [c.provenance(i)["index"] for i in range(40)] == list(range(40))
    ref = pc.collect(arch="mlp", data="digits", out=tmp_path / "ref", n=40, epochs=2,
                     extra_steps=400, progress=False, model_kwargs={"hidden": [16]})
    assert same(c, ref)
