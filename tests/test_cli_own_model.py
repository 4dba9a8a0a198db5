"""A user's own model through the command line alone: a plain folder of checkpoints (two runs,
`.pt` in one, `.safetensors` in the other) -> import -> train -> sample -> eval with
--model FILE.py:CLASS and --data FILE.npz; and the pieces that path relies on."""

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from paramgen import CheckpointSet
from paramgen.cli import main
from repo_scripts import load_script

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MODEL = f"{EXAMPLES / 'own_model.py'}:TinyNet"


def _example():
    return load_script("examples/own_model.py", "own_model_example")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """examples/own_model.py's two runs: run0/*.pt, run1/*.safetensors, and data.npz."""
    root = tmp_path_factory.mktemp("own")
    ex = _example()
    argv = sys.argv
    sys.argv = ["own_model.py", str(root / "ckpts"), "--runs", "2", "--ckpts", "4", "--every",
                "10"]
    try:
        ex.main()
    finally:
        sys.argv = argv
    return root


def test_the_example_writes_both_formats(runs):
    assert sorted(p.suffix for p in (runs / "ckpts" / "run0").iterdir()) == [".pt"] * 4
    assert sorted(p.suffix for p in (runs / "ckpts" / "run1").iterdir()) == [".safetensors"] * 4
    with np.load(runs / "data.npz") as f:
        assert f["x_test"].shape == (1000, 16) and f["y_test"].shape == (1000,)


def test_own_model_round_trip_on_the_command_line(runs, tmp_path, capsys):
    ckpts, coll = runs / "ckpts", tmp_path / "coll"
    assert main(["import", str(ckpts), "--out", str(coll)]) == 0
    out = capsys.readouterr().out
    assert "found 8 checkpoints in 2 runs (run0, run1)" in out and "4 keys, 483 parameters" in out
    loaded = CheckpointSet.load(coll)
    assert loaded.runs == [0] * 4 + [1] * 4
    assert loaded.provenance(0)["source"] == "run0/step00110.pt"

    gen = tmp_path / "gen"
    # the plain folder itself, as a user would first try it
    assert main(["train", "--ckpts", str(ckpts), "--out", str(gen), "--steps", "6",
                 "--model", MODEL, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "found 8 checkpoints in 2 runs" in out
    assert "align: checkpoints" in out  # the basin test ran on the user's architecture
    # --quiet prints the settings the fit used: 6 steps on the cpu, not the preset's 600/auto
    settings = next(line for line in out.splitlines() if line.startswith("settings:"))
    assert "6 steps" in settings and "device cpu" in settings

    samples = tmp_path / "samples"
    assert main(["sample", "--gen", str(gen), "-n", "3", "--out", str(samples)]) == 0
    assert len(list(samples.glob("*.safetensors"))) == 3
    capsys.readouterr()

    assert main(["eval", "--samples", str(samples), "--ckpts", str(coll), "--model", MODEL,
                 "--model-args", json.dumps({"hidden": 24}), "--data", str(runs / "data.npz"),
                 "--no-plots", "--noise-scales", "0.1", "--noise-per-scale", "2",
                 "--mix-pairs", "2"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^original\s+8\s", out, re.M) and re.search(r"^generated\s+3\s", out, re.M)
    report = json.loads((samples / "report" / "report.json").read_text())
    assert report["n_test"] == 1000


def test_eval_with_data_pt_and_a_model_that_does_not_fit(runs, tmp_path, capsys):
    data = tmp_path / "data.pt"
    with np.load(runs / "data.npz") as f:
        torch.save({"x_test": torch.from_numpy(f["x_test"]),
                    "y_test": torch.from_numpy(f["y_test"])}, data)
    samples = tmp_path / "samples"
    samples.mkdir()
    sd = torch.load(runs / "ckpts" / "run0" / "step00110.pt", weights_only=True)
    save_file(sd, str(samples / "sample_000.safetensors"))
    assert main(["eval", "--samples", str(samples), "--ckpts", str(runs / "ckpts"), "--model",
                 MODEL, "--data", str(data), "--no-plots", "--noise-scales",
                 "--mix-alphas"]) == 0
    capsys.readouterr()
    assert main(["eval", "--samples", str(samples), "--ckpts", str(runs / "ckpts"), "--model",
                 MODEL, "--model-args", '{"hidden": 8}', "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert "does not fit the checkpoints" in err and "fc1.weight [8, 16] vs [24, 16]" in err
    # no --model on a collection that names no architecture: said in option words
    assert main(["eval", "--samples", str(samples), "--ckpts", str(runs / "ckpts"),
                 "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert "give --model FILE.py:CLASS" in err and "model=" not in err


@pytest.mark.parametrize("spec,words", [
    ("nofile.py:Net", "no such file"),
    ("{ex}:Nope", "defines no 'Nope'; its nn.Module classes: TinyNet"),
    ("{ex}", "expected FILE.py:CLASS"),
])
def test_bad_model_option_names_the_fault(spec, words, runs, tmp_path, capsys):
    spec = spec.format(ex=EXAMPLES / "own_model.py")
    assert main(["align", "--ckpts", str(runs / "ckpts"), "--out", str(tmp_path / "a"),
                 "--model", spec]) == 2
    assert words in capsys.readouterr().err


def test_align_with_own_model(runs, tmp_path, capsys):
    out = tmp_path / "aligned"
    assert main(["align", "--ckpts", str(runs / "ckpts"), "--out", str(out), "--model", MODEL,
                 "--quiet"]) == 0
    assert "aligned 8 checkpoints" in capsys.readouterr().out
    assert len(CheckpointSet.load(out)) == 8


def test_data_file_errors(tmp_path, capsys):
    from paramgen.commands.user_model import load_data

    np.savez(tmp_path / "d.npz", x=np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"no x_test or y_test \(it holds x\)"):
        load_data(str(tmp_path / "d.npz"))
    np.savez(tmp_path / "e.npz", x_test=np.zeros((3, 2)), y_test=np.array([0.5, 1, 0]))
    with pytest.raises(ValueError, match="integer class labels"):
        load_data(str(tmp_path / "e.npz"))
    assert load_data("digits") == "digits"


def test_folder_mixing_files_and_runs_is_refused(tmp_path):
    save_file({"w": torch.zeros(2)}, str(tmp_path / "a.safetensors"))
    (tmp_path / "run0").mkdir()
    save_file({"w": torch.ones(2)}, str(tmp_path / "run0" / "b.safetensors"))
    with pytest.raises(ValueError, match=r"holds state dict files .*a\.safetensors.* and run "
                                         r"subfolders .*run0"):
        CheckpointSet.import_folder(tmp_path)


def test_train_on_a_custom_collection_without_model_says_it_in_option_words(runs, tmp_path,
                                                                               capsys):
    assert main(["train", "--ckpts", str(runs / "ckpts"), "--out", str(tmp_path / "g"),
                 "--steps", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("align:"))
    assert "--model FILE.py:CLASS" in line and "model=" not in line
    # a changed --steps on the same run: the refusal names the option, not the saved field
    assert main(["train", "--ckpts", str(runs / "ckpts"), "--out", str(tmp_path / "g"),
                 "--steps", "3", "--quiet", "--align", "none"]) == 2
    err = capsys.readouterr().err
    assert "--steps" in err and "stage_steps" not in err and "--workdir" in err
    # an unconditioned generator sampled with --condition
    assert main(["sample", "--gen", str(tmp_path / "g"), "--out", str(tmp_path / "s"),
                 "--condition", "0101"]) == 2
    err = capsys.readouterr().err
    assert "without --condition" in err and "condition=None" not in err


def test_import_refuses_what_it_cannot_import(runs, tmp_path, capsys):
    ckpts = runs / "ckpts"
    assert main(["import", str(ckpts), "--out", str(ckpts / "inside")]) == 2
    assert "is inside DIR" in capsys.readouterr().err
    assert main(["import", str(ckpts), "--out", str(tmp_path / "c"), "--in-shape", "16"]) == 0
    assert CheckpointSet.load(tmp_path / "c").info["in_shape"] == [16]
    capsys.readouterr()
    assert main(["import", str(tmp_path / "c"), "--out", str(tmp_path / "d")]) == 2
    assert "already a checkpoint collection" in capsys.readouterr().err
    assert main(["import", str(tmp_path / "nothing"), "--out", str(tmp_path / "e")]) == 2
    assert "no such folder" in capsys.readouterr().err
