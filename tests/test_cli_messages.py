"""What the command line says: option names instead of Python arguments, "did you mean",
presets refused before any work, progress bars that suit a log, the demo's order."""

import io
import re
from types import SimpleNamespace

import pytest

from paramgen.cli import main
from paramgen.commands.words import to_cli_words
from paramgen.notices import progress_bar

# `name=` with no value (or =None) is a Python keyword argument; `--set context=N` is an option
PYTHON_WORDS = re.compile(r"\b(model|condition|allow_pickle|example_input|inputs|context|"
                          r"chunk_size|task|trainable|keys)=(None\b|(?![A-Za-z0-9'\"]))|stage_steps|import_folder")


@pytest.mark.parametrize("message", [
    "align: the collection's info names no architecture (needs 'arch' and 'in_shape', as "
    "`paramgen collect` writes); pass model=, an instance of the architecture its checkpoints "
    "load into",
    "runs/x/manifest.json: no collection info; evaluation needs 'arch', 'in_shape' and "
    "'num_classes' to rebuild the model (or pass model= explicitly)",
    "this generator was trained without conditions; sample it with condition=None",
    "this generator was trained with conditions of size 10; pass condition= (e.g. task bits) to "
    "sample",
    "align: the collection's info has no 'in_shape'; pass example_input=, a batch of inputs the "
    "model accepts",
    "align: method='activations' needs inputs: pass inputs= (a batch of examples), or use a "
    "collection whose info names its 'data'",
    "d: a.pt are pickle files, which can execute code when loaded, so they are not read by "
    "default. If you trust them, opt in with allow_pickle=True; they are then read with "
    "torch.load(weights_only=True).",
    "runs/x/manifest.json is missing: runs/x is not a CheckpointSet folder; it holds checkpoint "
    "files: to read a plain folder of state dicts use CheckpointSet.import_folder('runs/x')",
    "w/train_state.safetensors holds a training run with other data or another config (seed: "
    "saved 0, now 1; stage_steps: saved [600], now [3]). Run with the same settings to resume "
    "it, or start over (`paramgen train --restart`, or a new workdir)",
    "the prior's context of 64: raise context= or chunk_size=",
    "trainable='last-norm-9': asked for the last 9 normalization layers, the state dict has 2 "
    "(bn1, bn2); give keys= explicitly; use trainable='all' or a list of key prefixes",
    "runs/grid is a task grid of 12 tasks; choose one to evaluate with task=BITS (--task), e.g. "
    "'0101010101'",
])
def test_library_messages_in_option_words(message):
    said = to_cli_words(message)
    assert not PYTHON_WORDS.search(said), said
    assert not re.search(r"\b[a-z_]+='|task=BITS", said), said  # trainable='all', task=BITS
    assert "--" in said  # names the option to use instead


def test_resume_refusal_names_options():
    said = to_cli_words("w holds a training run with other data or another config (seed: saved "
                        "0, now 1; stage_steps: saved [600], now [3]). Run ...")
    assert "--seed: saved 0, now 1" in said and "steps (--steps, per stage): saved 600, now 3" \
        in said


def test_message_without_python_words_is_unchanged():
    text = "--holdout must be in [0, 1), got 2 (KEY=VALUE pairs are fine)"
    assert to_cli_words(text) == text


def test_typo_in_an_option_gets_the_command_usage_and_a_suggestion(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--ckpts", "x", "--out", "y", "--stpes", "3"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: paramgen train")
    assert "unrecognized arguments: --stpes 3 (did you mean --steps?)" in err


@pytest.mark.parametrize("argv,hint", [
    (["trian"], "did you mean train?"),
    (["train", "--ckpts", "x", "--out", "y", "--method", "rgp"], "did you mean rpg?"),
    (["sample", "--gen", "g", "--out", "o", "--nmu", "3"], "did you mean --num?"),
])
def test_unknown_choices_and_commands_get_a_suggestion(argv, hint, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    assert hint in capsys.readouterr().err


def test_no_suggestion_when_nothing_is_close(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--ckpts", "x", "--out", "y", "--zzzzzz"])
    assert "did you mean" not in capsys.readouterr().err


def test_unknown_preset_is_refused_before_any_checkpoint_is_read(tmp_path, capsys):
    # --ckpts does not even exist: the preset is checked first
    assert main(["train", "--ckpts", str(tmp_path / "missing"), "--out", str(tmp_path / "g"),
                 "--preset", "cpu_tasks"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no import, no align step ran
    assert "--preset cpu_tasks: not a preset of --method rpg; did you mean cpu-tasks?" in \
        captured.err
    assert "[" not in captured.err  # listed plainly, not as a Python list


def test_progress_bar_on_a_log_prints_tens_of_lines():
    log = io.StringIO()
    bar = progress_bar(3000, "fit", True, file=log, mininterval=0)
    for step in range(3000):
        bar.update(1)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{1 / (step + 1):.3g}")  # must not add a line of its own
    bar.close()
    lines = log.getvalue().count("\r")
    assert 10 <= lines <= 30, lines
    assert "3000/3000" in log.getvalue()


def test_progress_bar_disabled_writes_nothing():
    log = io.StringIO()
    bar = progress_bar(100, "fit", False, file=log)
    bar.update(100)
    bar.close()
    assert log.getvalue() == ""


def _report(beats):
    return SimpleNamespace(
        metric="accuracy", generated_summary={"mean": 0.968, "best": 0.972},
        original_summary={"mean": 0.966, "best": 0.97}, generated_scores=[0.97] * len(beats),
        nonfinite={}, frontiers=["noise"], beats_both=beats,
        table=lambda: "ACCURACY TABLE", novelty_table=lambda: "NOVELTY TABLE",
        beat_line=lambda: f"{sum(beats)} of {len(beats)} generated models beat the baselines")


def test_demo_leads_with_what_worked_then_the_verdict():
    from paramgen.commands.demo import summary_lines

    lines = summary_lines(_report([False] * 10))
    text = "\n".join(lines)
    assert lines[0].startswith("generated models: all 10 load and run; mean accuracy 96.8%")
    assert text.index("ACCURACY TABLE") < text.index("NOVELTY TABLE") < \
        text.index("novelty verdict:") < text.index("0 of 10 generated models beat")
    assert "no generated model is more novel" in text
    assert "3 of 10 generated models are more novel" in "\n".join(
        summary_lines(_report([True] * 3 + [False] * 7)))
