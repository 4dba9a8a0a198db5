"""The pipeline end to end through the command line, at reduced size (marked slow; CI runs it)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from paramgen import CheckpointSet
from paramgen.cli import COMMANDS, main
from paramgen.evaluation.core import build_model, load_data_for, load_into
from paramgen.metrics import accuracy, balanced_accuracy, predict


@pytest.mark.slow
def test_collect_train_sample_eval_on_digits(tmp_path, capsys):
    ck, gen, samples = tmp_path / "ck", tmp_path / "gen", tmp_path / "samples"
    assert main(["collect", "--arch", "cnn-s", "--data", "digits", "-n", "12", "--runs", "1",
                 "--out", str(ck), "--no-progress"]) == 0
    assert main(["train", "--ckpts", str(ck), "--preset", "cpu", "--steps", "250",
                 "--out", str(gen), "--quiet"]) == 0
    assert main(["sample", "--gen", str(gen), "-n", "4", "--out", str(samples)]) == 0
    ckpts = CheckpointSet.load(ck)
    x, y = load_data_for(ckpts.info)
    model = build_model(ckpts.info)
    orig = [accuracy(predict(load_into(model, sd), x), y) for sd in ckpts]
    gen_acc = []
    for f in sorted(samples.glob("*.safetensors")):
        sd = load_file(str(f))
        assert not any(all(torch.equal(sd[k], c[k]) for k in c) for c in ckpts)
        gen_acc.append(accuracy(predict(load_into(model, sd), x), y))
    assert len(gen_acc) == 4
    # 250 steps is a tenth of a real budget; the generated models must still work.
    assert sum(gen_acc) / 4 > sum(orig) / len(orig) - 0.05
    assert main(["eval", "--samples", str(samples), "--ckpts", str(ck), "--no-plots",
                 "--noise-scales", "0.1"]) == 0
    assert "generated" in capsys.readouterr().out
    assert (samples / "report" / "report.md").is_file()


@pytest.mark.slow
def test_task_grid_to_prompt(tmp_path, capsys):
    grid, gen = tmp_path / "grid", tmp_path / "taskgen"
    assert main(["collect", "--tasks", "12", "--data", "digits", "--per-task", "2",
                 "--out", str(grid), "--workers", "1", "--no-progress"]) == 0
    assert main(["train", "--ckpts", str(grid), "--condition-from", "manifest", "--holdout",
                 "0.2", "--steps", "300", "--out", str(gen), "--quiet"]) == 0
    assert json.loads((gen / "config.json").read_text())["preset"] == "cpu-tasks"
    split = json.loads((gen / "split.json").read_text())
    assert len(split["unseen"]) >= 1 and len(split["seen"]) >= 1
    assert not set(split["seen"]) & set(split["unseen"])
    out = tmp_path / "even.safetensors"
    assert main(["generate", "--gen", str(gen), "--prompt", "select all even digits",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "1010101010" in printed and "balanced accuracy" in printed
    # A model for a task the generator trained on must work (chance is 0.5); 300 steps is a
    # fraction of the preset's budget, so the bar is a working detector, not parity.
    task = split["seen"][0]
    seen_out = tmp_path / "seen.safetensors"
    assert main(["generate", "--gen", str(gen), "--task", task, "--out", str(seen_out)]) == 0
    info = CheckpointSet.load(grid).info
    x, y = load_data_for(info, task=task)
    score = balanced_accuracy(predict(load_into(build_model(info), load_file(str(seen_out))), x),
                              y)
    assert score > 0.75, (task, score)
    assert main(["generate", "--gen", str(gen), "--prompt", "purple elephants",
                 "--out", str(out)]) == 2


def test_help_of_every_command(capsys):
    assert {"collect", "align", "train", "sample", "eval", "generate", "demo"} <= set(COMMANDS)
    for cmd in COMMANDS:
        with pytest.raises(SystemExit) as exc:
            main([cmd, "--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert f"usage: paramgen {cmd}" in out and "--threads" in out


def test_missing_generator_is_a_clear_error(tmp_path, capsys):
    assert main(["sample", "--gen", str(tmp_path / "nope"), "--out", str(tmp_path / "s")]) == 2
    assert "config.json" in capsys.readouterr().err
