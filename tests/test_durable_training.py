"""Never lose a run (issue 24): kill -9 at any instant resumes to the uninterrupted bytes, and
SIGINT / SIGTERM save the step they hit, say so in one line and exit 130 / 143.

The kill tests run real ``python -m paramgen train`` processes with ``save_every=1`` (a save
every step, so kills land inside saves too) and kill them with SIGKILL at chosen instants: while
Python starts, at a random moment of training, the moment a save's temporary file appears, and
the moment the generator folder's pending config appears. After every kill the state on disk
must load; the next run (the same command, never ``--restart``) continues it; the last one's
``model.safetensors`` must equal the uninterrupted run's byte for byte.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import paramgen
from paramgen import CheckpointSet, train_state
from paramgen.cli import main
from paramgen.durable import pending_path
from paramgen.interrupts import Interrupted
from paramgen.methods import RPG, RPGConfig, load_generator

SRC = str(Path(paramgen.__file__).resolve().parents[1])
SETTINGS = ["token_size=16", "d_model=[32,32]", "d_state=4", "denoiser_channels=[1,8,16]",
            "num_train_timesteps=50", "batch_size=4", "diffusion_batch=32", "backbone=lstm",
            "save_every=1"]


def make_collection(folder: Path) -> Path:
    g = torch.Generator().manual_seed(0)
    sds = [{"w": torch.randn(5, 7, generator=g), "b": torch.randn(5, generator=g)}
           for _ in range(6)]
    CheckpointSet.from_state_dicts(sds).save(folder)
    return folder


def train_args(ckpts: Path, out: Path, steps: int, extra: tuple[str, ...] = ()) -> list[str]:
    args = ["train", "--ckpts", str(ckpts), "--out", str(out), "--steps", str(steps),
            "--align", "none", "--quiet"]
    for s in SETTINGS + list(extra):
        args += ["--set", s]
    return args


def start(args: list[str]) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "paramgen", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _inode(p: Path) -> int | None:
    try:
        return p.stat().st_ino
    except OSError:
        return None


def _wait(proc: subprocess.Popen, ready, every: float = 0.01, timeout: float = 300.0) -> bool:
    """Poll every ``every`` seconds until ready() or the process ends. (A busy loop would take
    a core from the process it waits for.)"""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if ready():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(every)
    raise AssertionError("the training process made no progress in time")


def kill_at(proc: subprocess.Popen, mode: str, out: Path, rng: random.Random) -> str:
    """SIGKILL ``proc`` at an instant chosen by ``mode``; what happened, for the record."""
    work = out / ".train"
    state = train_state.path(work)
    before = _inode(state)
    if mode == "startup":  # imports, loading the collection, resuming the state
        time.sleep(rng.uniform(0.0, 4.0))
    elif mode == "training":  # after this run's first save, a random moment some steps later
        if _wait(proc, lambda: _inode(state) not in (None, before)):
            time.sleep(rng.uniform(0.0, 0.15))
    elif mode == "state-save":  # a save's temporary file exists: kill inside the save
        if _wait(proc, lambda: _inode(state) not in (None, before)):
            # a save lasts milliseconds (it syncs the file and the folder): look often
            _wait(proc, lambda: any(work.glob(f".{train_state.FILE}.*.tmp")), every=1e-3)
    elif mode == "generator-save":  # the generator folder's pair is half written
        _wait(proc, lambda: pending_path(out / "config.json").is_file(), every=1e-3)
    elif mode == "sigterm":  # what `timeout` and schedulers send: a save, one line, 143
        if _wait(proc, lambda: _inode(state) not in (None, before)):
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 143, err
        last = err.strip().splitlines()[-1]
        assert last.startswith("paramgen train: interrupted at step ") and "(SIGTERM)" in last
        assert last.endswith(f"state saved to {work}; run the same command again to resume")
        assert train_state.load(work)["step"] == int(last.split("at step ")[1].split()[0])
        return mode
    else:
        raise ValueError(mode)
    proc.kill()
    _, err = proc.communicate()
    if proc.returncode not in (-signal.SIGKILL, 0):
        raise AssertionError(f"a run failed instead of resuming (rc {proc.returncode}): {err}")
    return "finished" if proc.returncode == 0 else mode


def check_on_disk(out: Path) -> int | None:
    """What a kill left must load: the training state, and the generator when it has a config.
    Returns the state's step (None before the first save)."""
    work = out / ".train"
    step = train_state.load(work)["step"] if train_state.exists(work) else None
    if (out / "config.json").is_file():
        load_generator(out)
    return step


def kill_chain(tmp_path: Path, modes: list[str], steps: int, seed: int) -> dict[str, int]:
    ckpts = make_collection(tmp_path / "ckpts")
    ref, out = tmp_path / "ref", tmp_path / "out"
    assert main(train_args(ckpts, ref, steps)) == 0  # the uninterrupted run (in this process)
    rng = random.Random(seed)
    seen: dict[str, int] = {}
    inside_saves = 0
    steps_at: list[int | None] = []
    for mode in modes:
        what = kill_at(start(train_args(ckpts, out, steps)), mode, out, rng)
        seen[what] = seen.get(what, 0) + 1
        inside_saves += bool(list((out / ".train").glob(f".{train_state.FILE}.*.tmp")))
        steps_at.append(check_on_disk(out))
    seen["kills that left a save's temporary file"] = inside_saves
    print(f"kill -9 chain: {seen}; state steps after each kill: {steps_at}")
    # The same command once more, never --restart: it finishes what the kills interrupted.
    assert main(train_args(ckpts, out, steps)) == 0
    assert (out / "model.safetensors").read_bytes() == (ref / "model.safetensors").read_bytes()
    assert not list((out / ".train").glob("*.tmp"))
    assert not pending_path(out / "config.json").exists()
    return seen


@pytest.mark.slow  # tens of seconds: in the full run, out of the fast loop
def test_kill_9_inside_saves_resumes_to_the_uninterrupted_bytes(tmp_path):
    # Two real processes (each costs seconds of start-up): kill -9 inside a save of the training
    # state, and inside the generator folder's save. The slow test below runs forty instants,
    # SIGTERM to a real process among them.
    seen = kill_chain(tmp_path, ["state-save", "generator-save"], steps=20, seed=0)
    assert seen.get("finished", 0) == 0, seen


@pytest.mark.slow
def test_kill_9_at_forty_instants_resumes_to_the_uninterrupted_bytes(tmp_path):
    modes = ["startup"] * 4 + ["training"] * 15 + ["state-save"] * 15 + ["sigterm"] * 2
    random.Random(1).shuffle(modes)
    modes += ["generator-save"] * 4
    seen = kill_chain(tmp_path, modes, steps=400, seed=1)
    assert seen.get("finished", 0) == 0, seen
    assert seen["kills that left a save's temporary file"] >= 1, seen


# ------------------------------------------------------------------ SIGINT and SIGTERM

TINY = dict(token_size=16, d_model=(32, 32), d_state=4, denoiser_channels=(1, 8, 16),
            num_train_timesteps=50, batch_size=4, diffusion_batch=32, lr=1e-3, steps=8,
            sampler="ddim", sampling_steps=5, backbone="lstm", save_every=1000)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_saves_the_step_it_hit_and_the_rerun_goes_on_from_there(tmp_path, signum):
    ckpts = CheckpointSet.from_state_dicts([
        {"w": torch.randn(5, 7, generator=torch.Generator().manual_seed(i))} for i in range(6)])
    whole = RPG(config=RPGConfig(**TINY)).fit(ckpts, progress=False)
    before = signal.getsignal(signum)

    def signal_at_3(step: int, loss: float) -> None:
        if step == 3:
            signal.raise_signal(signum)  # delivered here, in this thread; honoured after step 3

    with pytest.raises(Interrupted) as caught:
        RPG(config=RPGConfig(**TINY)).fit(ckpts, progress=False, workdir=tmp_path,
                                          callback=signal_at_3)
    stop = caught.value
    assert (stop.step, stop.signum, stop.exit_code) == (3, signum, 128 + signum)
    assert str(stop) == (f"interrupted at step 3 ({signal.Signals(signum).name}); state saved "
                         f"to {tmp_path}; run the same command again to resume")
    assert train_state.load(tmp_path)["step"] == 3  # save_every=1000: the signal's own save
    assert signal.getsignal(signum) is before  # the engine's handler is gone again
    resumed = RPG(config=RPGConfig(**TINY))
    steps = []
    resumed.fit(ckpts, progress=False, workdir=tmp_path, callback=lambda s, l: steps.append(s))
    assert resumed.train_report.resumed_from == 3 and steps == list(range(4, 9))
    for k, v in whole.network.state_dict().items():
        assert torch.equal(v, resumed.network.state_dict()[k]), k


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_the_command_says_one_line_exits_128_plus_the_signal_and_resumes(tmp_path, capsys,
                                                                         signum):
    ckpts = make_collection(tmp_path / "ckpts")
    out = tmp_path / "out"
    args = train_args(ckpts, out, 60, ("save_every_seconds=0.05",))
    state = train_state.path(out / ".train")

    def send_when_training() -> None:
        # A first (timed) save shows the loop runs, so the signal reaches the engine's handler
        # rather than this test process's own.
        end = time.monotonic() + 120
        while not state.is_file() and time.monotonic() < end:
            time.sleep(0.005)
        os.kill(os.getpid(), signum)

    late: list[int] = []
    # Should the signal come after training (a very slow machine), it must not end pytest.
    previous = signal.signal(signum, lambda got, frame: late.append(got))
    sender = threading.Thread(target=send_when_training)
    sender.start()
    try:
        code = main(args)
    finally:
        sender.join()
        signal.signal(signum, previous)
    assert not late, "the signal came after training: the machine was too slow for this test"
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 128 + signum, err
    name = signal.Signals(signum).name
    line = err[-1]
    assert line.startswith("paramgen train: interrupted at step ") and f"({name})" in line, err
    step = int(line.split("at step ")[1].split()[0])
    assert line.endswith(f"state saved to {out / '.train'}; run the same command again to "
                         "resume")
    assert train_state.load(out / ".train")["step"] == step and 1 <= step < 60
    assert state.is_file() and not (out / "config.json").exists()
    assert main(args) == 0
    assert f"resumed from step {step}" in capsys.readouterr().out


# ------------------------------------------------------------------ generator folders


def test_a_generator_save_cut_between_its_renames_loads_the_old_or_the_new(tmp_path):
    """The states a kill can leave while B is saved over A: A + B's pending config (weights not
    yet renamed) loads A; B's weights + A's config + B's pending config loads B; a stale
    pending config beside a completed pair changes nothing."""
    import shutil

    from paramgen.durable import read_committed_json

    ckpts = CheckpointSet.from_state_dicts([
        {"w": torch.randn(5, 7, generator=torch.Generator().manual_seed(i))} for i in range(6)])
    cfg = dict(TINY, steps=2)
    a = RPG(config=RPGConfig(**cfg)).fit(ckpts, progress=False, seed=0)
    b = RPG(config=RPGConfig(**cfg)).fit(ckpts, progress=False, seed=1)
    a.save_pretrained(tmp_path / "a")
    b.save_pretrained(tmp_path / "b")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["config.json",
                                                                   "model.safetensors"]

    def same(gen, ref) -> bool:
        return all(torch.equal(v, gen.network.state_dict()[k])
                   for k, v in ref.network.state_dict().items())

    before = tmp_path / "before-weights"
    shutil.copytree(tmp_path / "a", before)
    shutil.copy(tmp_path / "b" / "config.json", pending_path(before / "config.json"))
    assert same(load_generator(before), a)
    after = tmp_path / "after-weights"
    shutil.copytree(before, after)
    shutil.copy(tmp_path / "b" / "model.safetensors", after / "model.safetensors")
    assert same(load_generator(after), b)
    # A completed save over a folder with a stale pending file: the committed pair wins.
    b.save_pretrained(after)
    assert not pending_path(after / "config.json").exists()
    shutil.copy(tmp_path / "a" / "config.json", pending_path(after / "config.json"))
    assert read_committed_json(after / "config.json", after / "model.safetensors") == \
        read_committed_json(tmp_path / "b" / "config.json", tmp_path / "b" / "model.safetensors")
    # Neither config names the weights (an edited file): the checksum error, as before.
    (after / "model.safetensors").write_bytes((tmp_path / "a" / "model.safetensors").read_bytes()
                                              + b" ")
    with pytest.raises(ValueError, match="checksum"):
        load_generator(after)
