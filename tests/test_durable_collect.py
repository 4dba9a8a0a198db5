"""Never lose a collection (issue 24): ``kill -9`` of a real ``python -m paramgen collect`` at
any instant, inside its saves included, and the same command run again (never ``--overwrite``)
ends with the uninterrupted run's collection, byte for byte; SIGINT and SIGTERM save the step
they hit, say so in one line naming ``collect`` and exit 130 / 143.

The kills come two ways. A *timed* kill sends SIGKILL from this process at a random moment. A
*file-event* kill makes the collection process SIGKILL itself at an exact point of its file
writes: :data:`HARNESS` starts ``paramgen`` with ``os.replace`` and ``os.unlink`` wrapped, and
kills the process before or after the k-th rename whose target matches (a checkpoint, the
manifest, a training state), or before a deletion (a finished run's state). "Before a rename" is
inside a save: the temporary file is complete, its name not yet taken; "after" is between two
writes that must agree, e.g. a checkpoint on disk that the manifest does not list yet, or a
manifest listing a checkpoint whose training state is not yet saved. Timing alone hits those
windows (a millisecond) rarely; the harness hits each one on purpose.

The comparison: the same files (checkpoints, manifest; no ``.resume`` folder, no temporary),
every checkpoint file and the manifest byte-identical. The manifest has no time-dependent field
(no timestamps, no durations), so the bytes compare in full. Only the folder's write log
(``.paramgen-output``, the list of files paramgen wrote, which decides what ``--overwrite``
deletes) compares as a set of lines: a resumed run appends names again, in its own order.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import paramgen
from paramgen import io, train_state
from paramgen.checkpoints import MANIFEST, CheckpointSet
from paramgen.cli import main

SRC = str(Path(paramgen.__file__).resolve().parents[1])

# Tiny but real: 2 runs of an MLP on digits, each 2 epochs (90 steps) then 4 checkpoints over 8
# steps. The training state is saved at the end of pretraining and after every checkpoint.
SINGLE = ["collect", "--arch", "mlp", "--hidden", "16", "--data", "digits", "-n", "4",
          "--runs", "2", "--epochs", "2", "--extra-steps", "8", "--no-progress"]
# A task grid: 6 tasks, 2 checkpoints each, trained in-process (--workers 1) in chunks of 2
# tasks, one manifest write per chunk, after a warm-start model trained on all classes.
GRID = ["collect", "--arch", "mlp", "--hidden", "8", "--data", "digits", "--tasks", "6",
        "--per-task", "2", "--epochs", "30", "--workers", "1", "--no-progress"]

HARNESS = r"""
import os, signal, sys, runpy
when, pattern, nth = os.environ["PARAMGEN_TEST_KILL"].split(":")
nth = int(nth)
log = os.environ.get("PARAMGEN_TEST_EVENTS")
seen = [0]

def event(kind, path):
    name = os.path.basename(os.fspath(path))
    if log:
        with open(log, "a") as f:
            f.write(f"{kind} {name}\n")
    if when in (kind, "any") and pattern in name:
        seen[0] += 1
        if seen[0] == nth:
            os.kill(os.getpid(), signal.SIGKILL)

real_replace, real_unlink = os.replace, os.unlink

def replace(src, dst, *a, **k):
    event("before", dst)
    real_replace(src, dst, *a, **k)
    event("after", dst)

def unlink(path, *a, **k):
    if not os.fspath(path).endswith(".tmp"):  # cleanups of temporaries are not commits
        event("unlink", path)
    real_unlink(path, *a, **k)

os.replace, os.unlink = replace, unlink
sys.argv = ["paramgen", *sys.argv[1:]]
runpy.run_module("paramgen", run_name="__main__")
"""


def _env(**extra: str) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1", **extra)


def run_harness(args: list[str], out: Path, kill: str = "none::0",
                events: Path | None = None) -> subprocess.CompletedProcess:
    """``paramgen ARGS --out OUT`` in a fresh process that SIGKILLs itself at event ``kill``
    ("when:pattern:n": the n-th rename "before"/"after" it happens, or "unlink", or "any" event,
    whose target's name contains pattern)."""
    env = _env(PARAMGEN_TEST_KILL=kill)
    if events is not None:
        env["PARAMGEN_TEST_EVENTS"] = str(events)
    return subprocess.run([sys.executable, "-c", HARNESS, *args, "--out", str(out)], env=env,
                          capture_output=True, text=True, timeout=300)


def start(args: list[str], out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "paramgen", *args, "--out", str(out)],
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def temporaries(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def check_on_disk(out: Path) -> int:
    """What a kill left must read back: the manifest (as a set once it lists a checkpoint) and
    every run's training state. Returns the checkpoints listed."""
    if not (out / MANIFEST).is_file():
        return 0
    listed = len(json.loads((out / MANIFEST).read_text())["checkpoints"])
    if listed:
        assert len(CheckpointSet.load(out)) == listed
    for work in sorted((out / ".resume").glob("run_*")):
        if train_state.exists(work):
            train_state.load(work)
    return listed


def assert_same_collection(out: Path, ref: Path) -> None:
    def files(folder: Path) -> list[str]:
        return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                      if p.name not in (io.OUTPUT_MARKER, io.LOCK_FILE))

    assert files(out) == files(ref), (files(out), files(ref))
    for name in files(ref):
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name
    logged = {line for line in (out / io.OUTPUT_MARKER).read_text().splitlines()}
    assert logged == set((ref / io.OUTPUT_MARKER).read_text().splitlines())


@pytest.mark.slow  # tens of seconds: in the full run, out of the fast loop
def test_kill_9_inside_collect_saves_resumes_to_the_uninterrupted_collection(tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "out"
    assert main(SINGLE + ["--out", str(ref)]) == 0  # the uninterrupted run, in this process
    # Inside the third save of the training state (run 0, after its 2nd checkpoint): the state's
    # temporary file is complete, the rename not done.
    done = run_harness(SINGLE, out, "before:train_state:3")
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert [p.name for p in temporaries(out)][0].startswith(f".{train_state.FILE}.")
    assert check_on_disk(out) == 2
    # The rerun, killed when its second checkpoint file is renamed into place and the manifest
    # does not list it yet (a checkpoint ahead of the manifest, and of the state).
    done = run_harness(SINGLE, out, "after:ckpt_:2")
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert check_on_disk(out) == 3 and (out / "ckpt_00003.safetensors").is_file()
    assert main(SINGLE + ["--out", str(out)]) == 0  # the same command; it finishes the job
    assert_same_collection(out, ref)


def test_kill_9_of_a_task_grid_between_its_checkpoints_and_manifest(tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "out"
    assert main(GRID + ["--out", str(ref)]) == 0
    # The second chunk's checkpoints are on disk, its manifest write is not (renamed: no).
    done = run_harness(GRID, out, "before:manifest:3")
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert check_on_disk(out) == 4 and (out / "ckpt_00007.safetensors").is_file()
    assert temporaries(out)  # the manifest's complete temporary, never renamed
    assert main(GRID + ["--out", str(out)]) == 0
    assert_same_collection(out, ref)


def _kill_chains(tmp_path: Path, args: list[str], instants: int, seed: int) -> dict[str, int]:
    """Kill -9 ``instants`` times, chain after chain: each process of a chain resumes what the
    previous one left; a chain ends when a run finishes on its own (the kill came later than
    its last event) or after a last plain rerun, and its collection is compared with the
    uninterrupted one's. Half the kills are file events chosen at random among all of a full
    run's (three in five), the others timed at random over a full run's wall time."""
    rng = random.Random(seed)
    ref = tmp_path / "ref"
    log = tmp_path / "events.log"
    t0 = time.monotonic()
    full = run_harness(args, ref, events=log)
    wall = time.monotonic() - t0
    assert full.returncode == 0, full.stderr
    events = log.read_text().splitlines()
    seen: dict[str, int] = {}
    chain, kills = 0, 0
    while kills < instants:
        out = tmp_path / f"chain{chain}"
        chain += 1
        for _ in range(8):  # at most 8 kills per chain, then a plain rerun
            if kills >= instants:
                break
            if rng.random() < 0.6:
                k = rng.randrange(len(events))
                kind, name = events[k].split()
                nth = sum(1 for e in events[:k + 1] if e == events[k])
                # Later processes have fewer events left: aim within the first half of them.
                if kills and nth > 1:
                    nth = rng.randint(1, max(1, nth // 2))
                done = run_harness(args, out, f"{kind}:{name}:{nth}")
                what = f"{kind} {name.split('_0')[0].split('.')[0]}"
            else:
                proc = start(args, out)
                time.sleep(rng.uniform(0.0, wall))
                proc.kill()
                _, err = proc.communicate()
                done = subprocess.CompletedProcess(proc.args, proc.returncode, "", err)
                what = "timed"
            if done.returncode == 0:
                seen["finished before the kill"] = seen.get("finished before the kill", 0) + 1
                break
            assert done.returncode == -signal.SIGKILL, done.stderr
            kills += 1
            seen[what] = seen.get(what, 0) + 1
            seen["inside a save (a temporary left)"] = (seen.get("inside a save (a temporary "
                                                                "left)", 0)
                                                        + bool(temporaries(out)))
            check_on_disk(out)
        assert main(args + ["--out", str(out)]) == 0
        assert_same_collection(out, ref)
    seen["chains"] = chain
    print(f"kill -9 of collect: {kills} instants, all bit-identical after the rerun: {seen}")
    return seen


@pytest.mark.slow
def test_kill_9_of_collect_at_thirty_instants_resumes_bit_identical(tmp_path):
    seen = _kill_chains(tmp_path, SINGLE, instants=30, seed=0)
    assert seen["inside a save (a temporary left)"] >= 3, seen


@pytest.mark.slow
def test_kill_9_of_a_task_grid_at_twelve_instants_resumes_bit_identical(tmp_path):
    _kill_chains(tmp_path, GRID, instants=12, seed=1)


# ------------------------------------------------------------------ SIGINT and SIGTERM


def _signal_when(proc: subprocess.Popen, log: Path, line: str, count: int, signum: int,
                 delay: float, group: bool = False) -> None:
    """Send ``signum`` ``delay`` seconds after the ``count``-th ``line`` in the events log (to
    the process group with ``group``: what Ctrl-C at a terminal does)."""
    end = time.monotonic() + 120
    while time.monotonic() < end and proc.poll() is None:
        try:
            if log.read_text().splitlines().count(line) >= count:
                break
        except OSError:
            pass
        time.sleep(0.005)
    time.sleep(delay)
    if group:
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)


def _start_logged(args: list[str], out: Path, log: Path, group: bool = False) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", HARNESS, *args, "--out", str(out)],
                            env=_env(PARAMGEN_TEST_KILL="none::0",
                                     PARAMGEN_TEST_EVENTS=str(log)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=group)


# Long enough pretraining (450 steps a run) that a signal lands inside a step of it.
LONG = [a if a != "2" or SINGLE[i - 1] != "--epochs" else "10" for i, a in enumerate(SINGLE)]


@pytest.mark.parametrize("signum", [signal.SIGTERM,
                                    pytest.param(signal.SIGINT, marks=pytest.mark.slow)])
def test_a_signal_to_collect_saves_its_step_says_one_line_and_the_rerun_goes_on(
        tmp_path, monkeypatch, signum):
    ref, out, log = tmp_path / "ref", tmp_path / "out", tmp_path / "events.log"
    assert main(LONG + ["--out", str(ref)]) == 0
    proc = _start_logged(LONG, out, log)
    # The first manifest (the settings record) is written just before run 0 starts training.
    _signal_when(proc, log, "after manifest.json", 1, signum, delay=0.3)
    _, err = proc.communicate(timeout=120)
    lines = err.strip().splitlines()
    assert proc.returncode == 128 + signum, err
    assert len(lines) == 1, err  # one line, nothing else (no traceback)
    line, name = lines[0], signal.Signals(signum).name
    assert line.startswith("paramgen collect: interrupted at step ") and f"({name})" in line
    saved = line.split("state saved to ")[1].split(";")[0]
    assert line.endswith("; run the same command again to resume"), line
    step = int(line.split("at step ")[1].split()[0])
    assert Path(saved).parent == out / ".resume"
    assert train_state.load(saved)["step"] == step  # the step it hit, saved
    before = {p.name: p.stat().st_ino for p in out.glob("ckpt_*")}
    # The rerun (in this process, to see where the Engine starts) resumes from that step.
    import paramgen.training as training

    starts: list[int] = []
    fit = training.Engine.fit

    def spy(self, *a, **k):
        report = fit(self, *a, **k)
        starts.append(report.resumed_from)
        return report

    monkeypatch.setattr(training.Engine, "fit", spy)
    assert main(LONG + ["--out", str(out)]) == 0
    assert starts[0] == step, starts
    assert_same_collection(out, ref)
    # The checkpoints written before the signal were kept, not written again.
    assert all((out / n).stat().st_ino == ino for n, ino in before.items())


@pytest.mark.parametrize("signum, workers", [(signal.SIGTERM, "1"),
                                             pytest.param(signal.SIGINT, "2",
                                                          marks=pytest.mark.slow)])
def test_a_signal_to_a_task_grid_keeps_the_finished_tasks_and_the_rerun_ends_identical(
        tmp_path, signum, workers):
    args = [a if a != "1" or GRID[i - 1] != "--workers" else workers
            for i, a in enumerate(GRID)] + ["--tasks", "12"]  # the later --tasks wins
    ref, out, log = tmp_path / "ref", tmp_path / "out", tmp_path / "events.log"
    assert main(args + ["--out", str(ref)]) == 0
    # SIGINT to the process group, as Ctrl-C at a terminal: the workers get it too.
    group = signum == signal.SIGINT
    proc = _start_logged(args, out, log, group=group)
    _signal_when(proc, log, "after manifest.json", 2, signum, delay=0.0, group=group)
    _, err = proc.communicate(timeout=120)
    lines = err.strip().splitlines()
    assert proc.returncode == 128 + signum and len(lines) == 1, err
    name = signal.Signals(signum).name
    assert lines[0].startswith("paramgen collect: interrupted at task "), err
    assert lines[0].endswith(f" of 12 ({name}); state saved to {out}; run the same command "
                             "again to resume"), err
    done = int(lines[0].split("at task ")[1].split()[0])
    listed = {p["task"] for p in json.loads((out / MANIFEST).read_text())["checkpoints"]
              for p in [p["provenance"]]}
    assert 1 <= done == len(listed) < 12
    assert main(args + ["--out", str(out)]) == 0
    assert_same_collection(out, ref)


def test_nested_stop_requests_share_a_signal_and_a_second_one_gets_out():
    """collect's loop over runs wraps the Engine's loop: a signal during the inner loop's set-up
    stops the inner loop at its first safe point, one during the inner loop reaches the outer
    one too, and after it the default handlers are back (a second Ctrl-C gets the user out)."""
    from paramgen.interrupts import StopRequests

    default = signal.getsignal(signal.SIGTERM)
    with StopRequests() as outer:
        # raise_signal: delivered to this thread before it returns (os.kill may land on another
        # thread of the process, and the main thread would see it a few bytecodes later)
        signal.raise_signal(signal.SIGTERM)
        assert outer.signal == signal.SIGTERM
        with StopRequests() as inner:  # set up after the signal
            assert inner.signal == signal.SIGTERM
            # the handlers stay as the first signal left them: a second one acts as usual
            assert signal.getsignal(signal.SIGTERM) is default
    assert signal.getsignal(signal.SIGTERM) is default
    with StopRequests() as outer:
        with StopRequests() as inner:
            signal.raise_signal(signal.SIGINT)
            assert inner.signal == outer.signal == signal.SIGINT
            assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is default
    exc = inner.interrupted(3, saved_to="out", what="task", of=7)
    assert str(exc) == ("interrupted at task 3 of 7 (SIGINT); state saved to out; run the same "
                        "command again to resume") and exc.exit_code == 130


@pytest.mark.slow
def test_a_signal_to_an_adapter_grid_keeps_the_finished_adapters(tmp_path):
    """`collect --lora`: SIGTERM while adapters train; the finished ones are in the manifest,
    the message counts them, and the rerun adds the rest without retraining them."""
    import threading

    pytest.importorskip("peft")
    from paramgen.adapters import collect_adapters
    from paramgen.interrupts import Interrupted

    out = tmp_path / "grid"
    tasks = ["0101010101", "1111100000", "0000000001", "1000000001"]
    kw = dict(recipe="r=2,targets=q,v", pretrain_steps=60, base_kwargs={"dim": 16, "heads": 2},
              steps=200, progress=False)
    first = out / "peft" / tasks[0] / "adapter_model.safetensors"

    def send() -> None:
        end = time.monotonic() + 300
        while not first.is_file() and time.monotonic() < end:
            time.sleep(0.005)
        os.kill(os.getpid(), signal.SIGTERM)

    late: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda got, frame: late.append(got))
    sender = threading.Thread(target=send)
    sender.start()
    try:
        with pytest.raises(Interrupted) as caught:
            collect_adapters("digits", out, tasks=tasks, **kw)
    finally:
        sender.join()
        signal.signal(signal.SIGTERM, previous)
    assert not late
    stop = caught.value
    assert (stop.what, stop.of, stop.exit_code) == ("adapter", 4, 143)
    listed = [p["provenance"]["task"] for p in
              json.loads((out / MANIFEST).read_text())["checkpoints"]]
    assert 1 <= stop.step == len(listed) < 4 and listed == tasks[:stop.step]
    kept = {p.name: p.stat().st_mtime_ns for p in out.glob("ckpt_*")}
    ckpts = collect_adapters("digits", out, tasks=tasks, **kw)
    assert [ckpts.provenance(i)["task"] for i in range(4)] == tasks
    assert all((out / n).stat().st_mtime_ns == t for n, t in kept.items())


@pytest.mark.slow
def test_kill_9_of_a_grid_with_workers_ends_the_workers_and_resumes_identical(tmp_path):
    """The parent of a pool killed with SIGKILL cannot end its workers: they notice it is gone
    and end within seconds, and the rerun ends with the uninterrupted grid."""
    if not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists():
        pytest.skip("needs /proc's children lists to find the workers")
    args = [a if a != "1" or GRID[i - 1] != "--workers" else "2"
            for i, a in enumerate(GRID)] + ["--tasks", "24"]
    ref, out, log = tmp_path / "ref", tmp_path / "out", tmp_path / "events.log"
    assert main(args + ["--out", str(ref)]) == 0
    proc = _start_logged(args, out, log)
    workers: set[int] = set()
    end = time.monotonic() + 120
    # After the first chunk is written, while the workers train the next ones.
    while time.monotonic() < end and proc.poll() is None:
        workers = {int(w) for w in Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
                   .read_text().split()}
        if log.is_file() and log.read_text().splitlines().count("after manifest.json") >= 2:
            break
        time.sleep(0.01)
    proc.kill()
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL and workers
    end = time.monotonic() + 30
    while time.monotonic() < end and any(Path(f"/proc/{w}").exists() for w in workers):
        time.sleep(0.1)
    alive = [w for w in workers if Path(f"/proc/{w}").exists()
             and "spawn" in Path(f"/proc/{w}/cmdline").read_text(errors="replace")]
    assert not alive, f"workers {alive} outlived their killed parent"
    assert 1 <= check_on_disk(out) < 48
    assert main(args + ["--out", str(out)]) == 0
    assert_same_collection(out, ref)


@pytest.mark.slow  # tens of seconds: in the full run, out of the fast loop
def test_a_grid_with_workers_ends_without_noise(tmp_path):
    """The pool ends its workers with SIGTERM; one that is already leaving (its task loop done,
    atexit callbacks running) must not print a SystemExit traceback after a successful grid."""
    args = [a if a != "1" or GRID[i - 1] != "--workers" else "2" for i, a in enumerate(GRID)]
    done = subprocess.run([sys.executable, "-m", "paramgen", *args, "--out", str(tmp_path / "g")],
                          env=_env(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
