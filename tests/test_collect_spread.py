"""`collect(spread=EPOCHS)` and the diverse defaults of `paramgen collect`: checkpoints spread
over several runs and several epochs of continued training actually differ."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pytest

import paramgen.collect as pc
import paramgen.commands.collect as cmd
from paramgen.checkpoints import CheckpointSet
from paramgen.cli import main
from paramgen.data import load
from paramgen.evaluation.novelty import ParamSpace

TINY = dict(arch="mlp", data="digits", epochs=1, progress=False, model_kwargs={"hidden": [16]})


def test_spread_sets_the_continuation_in_epochs(tmp_path: Path) -> None:
    ck = pc.collect(out=tmp_path / "a", n=3, spread=2, batch_size=256, **TINY)
    per_epoch = math.ceil(len(load("digits")[0]) / 256)
    assert ck.info["extra_steps"] == 2 * per_epoch
    steps = [ck.provenance(i)["continuation_step"] for i in range(3)]
    assert steps == [round((j + 1) * 2 * per_epoch / 3) for j in range(3)]
    with pytest.raises(ValueError, match="not both"):
        pc.collect(out=tmp_path / "b", n=3, spread=2, extra_steps=10, **TINY)
    for bad in (0, -1, float("nan")):
        with pytest.raises(ValueError, match="spread"):
            pc.collect(out=tmp_path / "c", n=3, spread=bad, **TINY)


def test_checkpoints_spread_over_epochs_and_runs_differ_more(tmp_path: Path) -> None:
    one = pc.collect(out=tmp_path / "one", n=4, batch_size=64, extra_steps=4, **TINY)
    wide = pc.collect(out=tmp_path / "wide", n=2, runs=2, batch_size=64, spread=3, **TINY)
    near_one = ParamSpace(list(one)).nearest_among_originals()
    near_wide = ParamSpace(list(wide)).nearest_among_originals()
    # Consecutive steps of one run are near copies; checkpoints epochs apart are not.
    assert min(near_wide) > 3 * max(near_one)
    assert wide.runs == [0, 0, 1, 1]


def test_cli_defaults_are_several_runs_over_several_epochs(tmp_path: Path, capsys) -> None:
    assert main(["collect", "--arch", "mlp", "--hidden", "8", "--data", "digits", "-n", "2",
                 "--runs", "2", "--epochs", "1", "--spread", "1.5", "--batch-size", "256",
                 "--out", str(tmp_path / "c"), "--no-progress"]) == 0
    ck = CheckpointSet.load(tmp_path / "c")
    assert ck.runs == [0, 0, 1, 1]
    assert ck.info["extra_steps"] == round(1.5 * math.ceil(len(load("digits")[0]) / 256))
    parser = argparse.ArgumentParser()
    cmd.add_arguments(parser)
    args = parser.parse_args(["--out", "x"])
    assert (args.runs, args.num, args.spread) == (5, 10, 5.0)
