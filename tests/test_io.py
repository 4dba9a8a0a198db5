"""Safe writes: output folders paramgen may use and clear, folder locks, no foreign deletes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from paramgen import io
from paramgen.checkpoints import MANIFEST, CheckpointSet, CheckpointWriter
from paramgen.cli import main


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


# ----------------------------------------------------------------------------- output folders

def test_new_folder_is_marked_and_everything_written_is_logged(tmp_path: Path) -> None:
    out = io.prepare_output_dir(tmp_path / "out", kind="samples")
    assert io.output_kind(out) == "samples"
    io.write_json(out / "a.json", {"x": 1})
    io.save_safetensors(out / "sub" / "m.safetensors", {"w": torch.ones(2)})
    assert {f.relative_to(out).as_posix() for f in io.written_files(out)} == {
        "a.json", "sub/m.safetensors"}


def test_another_process_preparing_the_same_folder_is_not_a_stranger(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    # what a second paramgen process leaves for a moment while it prepares the same folder
    for name in (io.LOCK_FILE, ".paramgen-probe.x1y2", f".{io.OUTPUT_MARKER}.ab12.tmp"):
        (out / name).write_text("")
    assert io.output_kind(io.prepare_output_dir(out, kind="checkpoints")) == "checkpoints"
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / ".paramgen-output-lookalike.tmp").write_text("")
    with pytest.raises(io.OutputError, match="not made by paramgen"):
        io.prepare_output_dir(tmp_path / "foreign", kind="checkpoints")


def test_fresh_deletes_only_what_paramgen_wrote(tmp_path: Path) -> None:
    out = io.prepare_output_dir(tmp_path / "out", kind="demo")
    io.write_text(out / "report.md", "old report")
    io.write_text(out / "ckpts" / "manifest.json", "{}")
    (out / "notes.txt").write_text("the user's own notes")  # not written by paramgen
    (out / "ckpts" / "mine.txt").write_text("also the user's")
    io.prepare_output_dir(out, fresh=True, kind="demo")
    assert _files(out) == {io.OUTPUT_MARKER, "notes.txt", "ckpts/mine.txt"}


def test_a_foreign_non_empty_folder_is_refused_then_adopted_without_deleting(tmp_path) -> None:
    (tmp_path / "data.csv").write_text("1,2,3")
    with pytest.raises(io.OutputError, match="not made by paramgen.*--overwrite"):
        io.prepare_output_dir(tmp_path)
    with pytest.raises(io.OutputError):
        io.prepare_output_dir(tmp_path, fresh=True)  # --fresh does not open a foreign folder
    io.prepare_output_dir(tmp_path, overwrite=True)
    io.write_text(tmp_path / "out.txt", "x")
    io.prepare_output_dir(tmp_path, overwrite=True)  # again: only out.txt may go
    assert _files(tmp_path) == {io.OUTPUT_MARKER, "data.csv"}


def test_a_folder_of_another_kind_is_not_cleared(tmp_path: Path) -> None:
    demo = io.prepare_output_dir(tmp_path / "demo", kind="demo")
    io.write_text(demo / "ckpts" / "manifest.json", "{}")
    with pytest.raises(io.OutputError, match="holds paramgen's demo, not samples"):
        io.prepare_output_dir(demo, fresh=True, kind="samples")
    assert (demo / "ckpts" / "manifest.json").exists()


def test_a_link_in_place_of_a_written_folder_never_leads_a_delete_elsewhere(tmp_path) -> None:
    out = io.prepare_output_dir(tmp_path / "out")
    io.write_text(out / "sub" / "x.txt", "paramgen's")
    elsewhere = tmp_path / "precious"
    elsewhere.mkdir()
    (elsewhere / "x.txt").write_text("someone else's")
    for f in (out / "sub").iterdir():
        f.unlink()
    (out / "sub").rmdir()
    (out / "sub").symlink_to(elsewhere)
    # Hand-edited log lines pointing outside are ignored too.
    with open(out / io.OUTPUT_MARKER, "a") as f:
        f.write("../precious/x.txt\n/etc/hostname\n")
    io.prepare_output_dir(out, fresh=True)
    assert (elsewhere / "x.txt").read_text() == "someone else's"


@pytest.mark.parametrize("make,words", [
    (lambda t: (t / "f").write_text("x") and t / "f", "is a file, not a folder"),
    (lambda t: (t / "f").write_text("x") and t / "f" / "a" / "b", "f is a file, not a folder"),
])
def test_check_writable_names_the_obstacle(tmp_path, make, words) -> None:
    with pytest.raises(io.OutputError, match=words):
        io.check_writable(make(tmp_path))


def test_check_writable_unwritable_and_full(tmp_path: Path) -> None:
    if Path("/sys").is_dir():
        with pytest.raises(io.OutputError, match="not writable"):
            io.check_writable("/sys/paramgen-test/out")
    with pytest.raises(io.OutputError, match="not enough free space"):
        io.check_writable(tmp_path / "x", need_bytes=1 << 62)
    assert io.check_writable(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # a check creates nothing


def test_demo_fresh_on_the_current_folder_deletes_nothing(tmp_path, monkeypatch, capsys) -> None:
    """Issue 14's first data-loss case: `paramgen demo --fresh --out .`."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "thesis.tex").write_text("months of work")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "main.py").write_text("print(1)")
    assert main(["demo", "--fresh", "--out", "."]) == 2
    assert "not made by paramgen" in capsys.readouterr().err
    assert _files(tmp_path) == {"thesis.tex", "src/main.py"}


# ----------------------------------------------------------------------------- CheckpointSet.save

def test_save_never_deletes_files_it_did_not_write(tmp_path: Path) -> None:
    sds = [{"w": torch.full((3,), float(i))} for i in range(3)]
    CheckpointSet.from_state_dicts(sds).save(tmp_path)
    CheckpointSet.from_state_dicts(sds[:2]).save(tmp_path)
    assert not (tmp_path / "ckpt_00002.safetensors").exists()  # its own stale file goes
    (tmp_path / "notes.txt").write_text("mine")
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    # An older manifest that (edited, or written by a tool) lists files that are not its own.
    for name in (MANIFEST, "notes.txt", "../outside.txt"):
        manifest["checkpoints"].append(dict(manifest["checkpoints"][0], file=name))
    (tmp_path.parent / "outside.txt").write_text("outside")
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    CheckpointSet.from_state_dicts(sds[:1]).save(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert (tmp_path.parent / "outside.txt").exists()
    assert len(CheckpointSet.load(tmp_path)) == 1


# ----------------------------------------------------------------------------- locks

def test_a_second_writer_in_one_process_is_refused_not_deadlocked(tmp_path: Path) -> None:
    with CheckpointWriter(tmp_path, info={"a": 1}):
        with pytest.raises(io.OutputError, match="already open for writing in this process"):
            CheckpointWriter(tmp_path, info={"a": 1})
    with CheckpointWriter(tmp_path, info={"a": 1}) as w:  # released: usable again
        w.add({"w": torch.ones(2)})


def test_lock_held_by_another_process_is_waited_for(tmp_path: Path) -> None:
    # The holder takes the same flock as FolderLock, without importing torch (starts fast).
    code = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX); os.pwrite(fd, str(os.getpid()).encode(), 0); "
            "print('held', flush=True); time.sleep(1.5)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / io.LOCK_FILE)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(io.OutputError, match=r"another paramgen process \(pid \d+\)"):
        io.FolderLock(tmp_path, wait=False).acquire()
    t0 = time.monotonic()
    with io.FolderLock(tmp_path):
        waited = time.monotonic() - t0
    holder.wait()
    assert waited > 0.3  # it waited for the holder instead of writing alongside it


GRID = ["--per-task", "1", "--epochs", "20", "--hidden", "8", "--workers", "1", "--no-progress"]


@pytest.mark.slow
def test_two_collect_processes_into_one_folder_keep_every_task(tmp_path: Path) -> None:
    """Issue 14: `collect --tasks @A` and `@B` into one --out at once must not lose tasks."""
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("0101010101\n1000000000\n0000000011\n")
    b.write_text("1111100000\n0011001100\n0000000111\n")
    out = tmp_path / "grid"
    env = {**os.environ, "PYTHONPATH": str(Path(io.__file__).parents[2]),
           "OMP_WAIT_POLICY": "PASSIVE"}
    procs = [subprocess.Popen([sys.executable, "-m", "paramgen.cli", "collect", "--tasks",
                               f"@{f}", "--out", str(out), *GRID], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for f in (a, b)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    c = CheckpointSet.load(out)
    tasks = sorted(c.provenance(i)["task"] for i in range(len(c)))
    assert tasks == sorted(a.read_text().split() + b.read_text().split())
    assert len({c.provenance(i)["task"] for i in range(len(c))}) == 6


def test_a_command_that_fails_on_its_input_leaves_no_empty_folder(tmp_path, capsys) -> None:
    assert main(["collect", "--out", str(tmp_path / "new"), "--runs", "-1", "--no-progress"]) == 2
    assert "runs=-1" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
    (tmp_path / "mine").mkdir()
    assert main(["collect", "--out", str(tmp_path / "mine"), "--runs", "-1"]) == 2
    assert (tmp_path / "mine").is_dir()  # the user's own (empty) folder stays
    (tmp_path / "unused").mkdir()
    io.write_text(tmp_path / "unused" / io.OUTPUT_MARKER, "# paramgen output folder (kind: x)\n")
    assert io.discard_if_unused(tmp_path / "unused")  # only the marker: it goes
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "a.txt").write_text("a")
    io.write_text(tmp_path / "used" / io.OUTPUT_MARKER, "# paramgen output folder (kind: x)\n")
    assert not io.discard_if_unused(tmp_path / "used") and (tmp_path / "used" / "a.txt").exists()


# ----------------------------------------------------------------------------- permissions

@pytest.fixture
def umask():
    """Set the process umask for one test and restore it after."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755),
                                                       (0o077, 0o600, 0o700),
                                                       (0o002, 0o664, 0o775)])
def test_outputs_get_the_mode_of_a_plain_open_under_the_umask(tmp_path, umask, mask, file_mode,
                                                              dir_mode) -> None:
    """Issue 24: outputs were 0600 whatever the umask (mkstemp's mode kept by the rename)."""
    umask(mask)
    assert io.file_mode() == file_mode
    out = io.prepare_output_dir(tmp_path / "out", kind="samples")
    io.write_json(out / "a.json", {"x": 1})
    io.save_safetensors(out / "sub" / "m.safetensors", {"w": torch.ones(2)})
    with io.SafetensorsStreamWriter(out / "s.safetensors", [("w", [2], torch.float32)]) as w:
        w.write("w", torch.ones(2))
    CheckpointSet.from_state_dicts([{"w": torch.ones(2)}]).save(out / "ckpts")
    files = [out / "a.json", out / "sub" / "m.safetensors", out / "s.safetensors",
             out / io.OUTPUT_MARKER, out / "ckpts" / MANIFEST,
             out / "ckpts" / "ckpt_00000.safetensors"]
    assert {f.name: oct(_mode(f)) for f in files} == {f.name: oct(file_mode) for f in files}
    for folder in (out, out / "sub", out / "ckpts"):
        assert _mode(folder) == dir_mode, folder
    # locks stay private, whatever the umask
    assert _mode(out / "ckpts" / io.LOCK_FILE) == 0o600 & ~mask
    # and no temporary is left behind
    assert not [p for p in out.rglob("*.tmp")]


def test_a_temporary_is_private_while_it_fills(tmp_path, umask, monkeypatch) -> None:
    umask(0o022)
    seen: list[int] = []
    import paramgen.io.atomic as atomic

    real = atomic.save_file

    def spy(tensors, path, metadata=None):
        seen.append(_mode(Path(path)))
        real(tensors, path, metadata=metadata)

    monkeypatch.setattr(atomic, "save_file", spy)
    io.save_safetensors(tmp_path / "m.safetensors", {"w": torch.ones(2)})
    assert seen == [0o600]
    assert _mode(tmp_path / "m.safetensors") == 0o644


@pytest.mark.parametrize("write", ["json", "safetensors", "stream"])
def test_a_write_syncs_its_file_before_the_rename_and_its_folder_after(tmp_path, monkeypatch,
                                                                       write) -> None:
    """Issue 24: a write that returned survives a power cut. The file's bytes are synced before
    its name replaces the old one (else a crash can leave the new name on empty bytes), and the
    folder after (else the rename itself can be lost)."""
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}")
        events.append(("fsync-dir" if os.path.isdir(target) else "fsync-file",
                       Path(target).name))
        real_fsync(fd)

    def replace(src, dst) -> None:
        events.append(("rename", Path(dst).name))
        real_replace(src, dst)

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc to tell a file's descriptor from a folder's")
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "out"
    if write == "json":
        io.write_json(target, {"x": 1})
    elif write == "safetensors":
        io.save_safetensors(target, {"w": torch.ones(2)})
    else:
        with io.SafetensorsStreamWriter(target, [("w", [2], torch.float32)]) as w:
            w.write("w", torch.ones(2))
    kinds = [kind for kind, _ in events]
    assert kinds == ["fsync-file", "rename", "fsync-dir"], events
    assert events[0][1].startswith(".out.") and events[2][1] == tmp_path.name
