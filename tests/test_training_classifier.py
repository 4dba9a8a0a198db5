"""Classifier training on the Engine: phases, data order, bit-exact resume, no pickle."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from paramgen import train_state
from paramgen.training_classifier import Phase, _PhasedStage, fit_classifier, steps_per_epoch


def _data(n: int = 90, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return x, y


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    # Dropout draws from the global generator: resume must replay its masks too.
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))


def _stop_at_15(step: int, _model: nn.Module) -> None:
    if step == 15:
        raise KeyboardInterrupt


PHASES = [Phase("pre", 12, 0.05, schedule="cosine", min_lr_ratio=0.1, warmup_steps=2),
          Phase("head", 8, 0.01, schedule="constant", trainable=["3.weight", "3.bias"])]


def test_steps_per_epoch_counts_the_last_partial_batch_from_min_batch():
    assert steps_per_epoch(10, 4) == 3
    assert steps_per_epoch(9, 4, min_batch=2) == 2      # a last batch of one is skipped
    assert steps_per_epoch(10, 4, min_batch=2) == 3
    assert steps_per_epoch(10, None) == steps_per_epoch(10, 50) == 1


def test_phases_share_one_schedule_per_phase_and_one_optimizer():
    stage = _PhasedStage(name="train", steps=20, module=_model(), lr=0.05, phases=PHASES)
    assert stage.lr_at(0) == pytest.approx(0.025)            # warm-up: 1/2 of lr
    assert stage.lr_at(11) == pytest.approx(0.005)           # cosine down to a tenth
    assert [stage.lr_at(s) for s in (12, 19)] == [0.01, 0.01]  # then the constant phase
    assert stage.phase_at(12) == (1, 0)
    assert len(stage.param_groups()) == 1


def test_a_phase_trains_only_its_parameters():
    x, y = _data()
    model = _model()
    seen = {}
    fit_classifier(model, x, y, PHASES, batch_size=32, seed=3,
                   on_step=lambda step, m: seen.__setitem__(step, {k: v.clone() for k, v in
                                                                   m.state_dict().items()}))
    assert sorted(seen) == list(range(1, 21)) and not model.training
    first, last = seen[12], seen[20]
    assert torch.equal(first["0.weight"], last["0.weight"])  # frozen in phase "head"
    assert not torch.equal(first["3.weight"], last["3.weight"])
    assert not torch.equal(seen[1]["0.weight"], first["0.weight"])  # learnt in phase "pre"


def _reference_and_interrupted(work: Path):
    """The data, an uninterrupted model, and a run into ``work`` stopped after step 15 (saves
    at phase ends and after step 14)."""
    x, y = _data()
    ref = _model()
    fit_classifier(ref, x, y, PHASES, batch_size=32, seed=3)
    with pytest.raises(KeyboardInterrupt):
        fit_classifier(_model(), x, y, PHASES, batch_size=32, seed=3, on_step=_stop_at_15,
                       workdir=work, identity={"what": "test"}, save_steps=[14])
    return x, y, ref


def test_resume_after_an_interrupt_is_bit_exact_and_pickle_free(tmp_path: Path):
    work = tmp_path / "w"
    x, y, ref = _reference_and_interrupted(work)
    assert train_state.load(work)["step"] == 14             # the last asked-for save
    assert not list(work.rglob("*.pt"))
    steps = []
    resumed = _model(seed=1)  # other initial weights: the saved ones must replace them
    fit_classifier(resumed, x, y, PHASES, batch_size=32, seed=3, workdir=work,
                   identity={"what": "test"}, on_step=lambda s, m: steps.append(s))
    assert steps == list(range(15, 21))
    assert all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(),
                                                 resumed.state_dict().values()))
    with pytest.raises(ValueError, match="what: saved test, now other"):
        fit_classifier(_model(), x, y, PHASES, batch_size=32, seed=3, workdir=work,
                       identity={"what": "other"})


def test_bad_input_is_named():
    x, y = _data()
    with pytest.raises(ValueError, match="no phase with steps"):
        fit_classifier(_model(), x, y, [Phase("none", 0, 0.1)])
    with pytest.raises(ValueError, match="phase 'p': schedule must be one of"):
        fit_classifier(_model(), x, y, [Phase("p", 3, 0.1, schedule="step")])
    with pytest.raises(ValueError, match="90 inputs and 89 labels"):
        fit_classifier(_model(), x, y[:-1], PHASES)
    with pytest.raises(ValueError, match="loss became nan"):
        fit_classifier(_model(), x * float("nan"), y, PHASES)


def test_a_torn_state_is_removed_with_a_warning_and_training_starts_over(tmp_path: Path):
    work = tmp_path / "w"
    x, y, ref = _reference_and_interrupted(work)
    for f in work.iterdir():  # what a kill in the middle of a save may leave: cut files
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    steps = []
    with pytest.warns(UserWarning, match="starts over from step 0"):
        fit_classifier(model := _model(), x, y, PHASES, batch_size=32, seed=3, workdir=work,
                       identity={"what": "test"}, on_step=lambda s, m: steps.append(s))
    assert steps[0] == 1 and len(steps) == 20
    assert all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(),
                                                 model.state_dict().values()))
