"""paramgen.align: permutation structure from a trace, exact permutation, matching, pg.align."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from paramgen import zoo
from paramgen.align import (UnsupportedLayerError, align, apply_permutations, basin_test,
                            barrier, discover, invert, prepare_for_training, random_permutations,
                            structure_for)
from paramgen.align.weights import match_weights
from paramgen.checkpoints import CheckpointSet


class TinyTransformer(nn.Module):
    """A model outside the zoo: torch's own TransformerEncoderLayer (fused q/k/v projection)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(6, 16)
        self.block = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.block(self.embed(x)).mean(1))


class WithLSTM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(4, 8)
        self.rnn = nn.LSTM(8, 8, batch_first=True)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(self.rnn(self.encoder(x))[0][:, -1])


def _noisy(model: nn.Module, seed: int) -> nn.Module:
    """`model` with every float entry (BatchNorm running statistics too) moved off its init, so
    that a wrongly permuted statistic or bias would change the outputs."""
    gen = torch.Generator().manual_seed(seed)
    sd = {k: (v + 0.2 * torch.randn(v.shape, generator=gen)).abs() if "running_var" in k else
          v + 0.2 * torch.randn(v.shape, generator=gen) if v.is_floating_point() else v
          for k, v in model.state_dict().items()}
    model.load_state_dict(sd)
    return model.eval()


# name, builder, input shape, expected group sizes (each kind of layer must be found)
CASES = {
    "mlp-layernorm": (lambda: zoo.create("mlp", (12,), 3, hidden=(16, 8), layernorm=True),
                      (12,), [8, 16]),
    "cnn-batchnorm": (lambda: nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6),
                                            nn.ReLU(), nn.Conv2d(6, 4, 3), nn.BatchNorm2d(4),
                                            nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5),
                                            nn.Tanh(), nn.Linear(5, 3)), (1, 8, 8), [4, 5, 6]),
    "residual": (lambda: zoo.create("resnet-mini", (1, 8, 8), 3), (1, 8, 8), [4, 4, 8, 16]),
    "vit": (lambda: zoo.create("vit-tiny", (1, 8, 8), 3), (1, 8, 8), [3, 3, 16, 16, 48, 96, 96]),
    "transformer-layer": (TinyTransformer, (7, 6), [4, 4, 16, 32]),
    "convnext-depthwise": (lambda: zoo.create("convnext-mini", (1, 8, 8), 3, depths=(1, 1),
                                              dims=(8, 8)), (1, 8, 8), None),
}


@pytest.fixture(scope="module")
def traced():
    out = {}
    for name, (build, shape, _) in CASES.items():
        torch.manual_seed(0)
        model = _noisy(build(), seed=1)
        out[name] = (model, build, shape, discover(model, torch.randn(2, *shape)))
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_structure_finds_every_layer_kind(traced, name):
    _, _, _, spec = traced[name]
    expected = CASES[name][2]
    if expected is not None:
        assert sorted(spec.groups.values()) == expected
    else:
        assert len(spec.groups) >= 3
    # BatchNorm running statistics move with their channels.
    for key in ("1.running_mean", "1.running_var", "layer1.bn1.running_mean"):
        if key in traced[name][0].state_dict():
            assert key in spec.axes


@pytest.mark.parametrize("name", list(CASES))
def test_random_permutation_preserves_the_function(traced, name):
    model, build, shape, spec = traced[name]
    sd = model.state_dict()
    permuted = apply_permutations(sd, spec, random_permutations(spec, seed=3))
    assert any(not torch.equal(permuted[k], sd[k]) for k in spec.axes)  # it did move something
    other = build().eval()
    other.load_state_dict(permuted)
    x = torch.randn(16, *shape, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(other(x), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list(CASES))
def test_aligning_a_model_to_itself_is_the_identity(traced, name):
    model, _, _, spec = traced[name]
    sd = model.state_dict()
    perms = match_weights(spec, sd, sd)
    for g, p in perms.items():
        assert torch.equal(p, torch.arange(spec.groups[g])), g


@pytest.mark.parametrize("name", list(CASES))
def test_permuted_model_is_aligned_back_exactly(traced, name):
    model, _, _, spec = traced[name]
    sd = model.state_dict()
    scrambled = apply_permutations(sd, spec, random_permutations(spec, seed=5))
    back = apply_permutations(scrambled, spec, match_weights(spec, sd, scrambled))
    for k in sd:
        assert torch.equal(back[k], sd[k]), k


def test_inverse_undoes_a_permutation(traced):
    model, _, _, spec = traced["residual"]
    sd = model.state_dict()
    perms = random_permutations(spec, seed=6)
    back = apply_permutations(apply_permutations(sd, spec, perms), spec, invert(perms))
    assert all(torch.equal(back[k], sd[k]) for k in sd)


def test_activation_matching_recovers_a_permutation(traced):
    from paramgen.align.activations import match_activations

    model, _, shape, spec = traced["cnn-batchnorm"]
    sd = model.state_dict()
    scrambled = apply_permutations(sd, spec, random_permutations(spec, seed=7))
    x = torch.randn(64, *shape, generator=torch.Generator().manual_seed(8))
    back = apply_permutations(scrambled, spec, match_activations(spec, sd, scrambled, x))
    assert all(torch.equal(back[k], sd[k]) for k in sd)


@pytest.mark.filterwarnings("ignore:The tensor attributes")
def test_unsupported_layer_is_named():
    with pytest.raises(UnsupportedLayerError, match=r"layer rnn \(LSTM\).*lstm"):
        discover(WithLSTM(), torch.randn(2, 5, 4))


# ----------------------------------------------------------------------------- pg.align

def _train_mlp(seed: int, steps: int = 60, init: dict | None = None) -> dict:
    """A small MLP fitted to a fixed synthetic task from its own initialisation (or `init`)."""
    gen = torch.Generator().manual_seed(123)
    x = torch.randn(256, 10, generator=gen)
    y = (x[:, :3].sum(1) > 0).long() + (x[:, 3] > 0.5).long()
    model = zoo.create("mlp", (10,), 3, seed=seed, hidden=(24,))
    if init is not None:
        model.load_state_dict(init)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    torch.manual_seed(seed)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


INFO = {"arch": "mlp", "in_shape": [10], "num_classes": 3, "model_kwargs": {"hidden": [24]}}


@pytest.fixture(scope="module")
def two_runs():
    sds = [_train_mlp(seed=s, steps=60 + 5 * k) for s in (0, 1, 2) for k in range(2)]
    return CheckpointSet.from_state_dicts(sds, runs=[0, 0, 1, 1, 2, 2], info=INFO,
                                          metrics=[{"accuracy": 0.5}] * 6)


def test_align_collection_keeps_function_and_metadata(two_runs):
    aligned = align(two_runs)  # architecture from info
    assert aligned.runs == two_runs.runs and aligned.metrics(3) == {"accuracy": 0.5}
    assert aligned.info["aligned"]["by"] == "run"
    model = zoo.create("mlp", (10,), 3, hidden=(24,)).eval()
    x = torch.randn(32, 10)
    for i in range(len(two_runs)):
        model.load_state_dict(two_runs[i])
        before = model(x)
        model.load_state_dict(aligned[i])
        torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)
    for k in two_runs.keys:  # the reference's run does not move
        assert torch.equal(aligned[0][k], two_runs[0][k]) and torch.equal(aligned[1][k],
                                                                           two_runs[1][k])
    # runs 1 and 2 moved closer to the reference
    def dist(a, b):
        return sum(float((a[k] - b[k]).norm() ** 2) for k in a) ** 0.5
    assert dist(aligned[0], aligned[2]) < 0.9 * dist(two_runs[0], two_runs[2])


def test_align_brings_a_permuted_copy_back(two_runs):
    spec = structure_for(two_runs)
    scrambled = apply_permutations(two_runs[0], spec, random_permutations(spec, seed=9))
    ckpts = CheckpointSet.from_state_dicts([two_runs[0], scrambled], info=INFO)
    for method in ("weights", "activations"):
        out = align(ckpts, method=method, inputs=torch.randn(128, 10))
        assert all(torch.equal(out[1][k], two_runs[0][k]) for k in two_runs.keys), method


def test_align_reference_and_model_errors(two_runs):
    out = align(two_runs, model=zoo.create("mlp", (10,), 3, hidden=(24,)), reference=4)
    assert all(torch.equal(out[4][k], two_runs[4][k]) for k in two_runs.keys)
    with pytest.raises(ValueError, match="out of range"):
        align(two_runs, reference=9)
    with pytest.raises(ValueError, match="does not match the checkpoints"):
        align(two_runs, model=zoo.create("mlp", (10,), 3, hidden=(32,)))
    bare = CheckpointSet.from_state_dicts(list(two_runs))
    with pytest.raises(ValueError, match="pass model="):
        align(bare)
    with pytest.raises(ValueError, match="method"):
        align(two_runs, method="magic")


def test_basin_test_tells_runs_from_one_basin(two_runs):
    spec = structure_for(two_runs)
    assert basin_test(two_runs, spec).several_basins
    # Fine-tunes of one model (one shared initialisation) share its basin.
    base = _train_mlp(seed=0)
    tuned = [_train_mlp(seed=s, steps=20, init=base) for s in range(4)]
    shared = CheckpointSet.from_state_dicts(tuned, runs=[0, 1, 2, 3], info=INFO)
    test = basin_test(shared, spec)
    assert not test.several_basins and test.median > 0.95
    assert not basin_test(align(two_runs), spec).several_basins  # aligned: one basin


def test_prepare_for_training_modes(two_runs):
    same, message = prepare_for_training(two_runs, "none")
    assert same is two_runs and "off" in message
    aligned, message = prepare_for_training(two_runs, "auto")
    assert "several basins" in message and "aligned" in aligned.info
    bare = CheckpointSet.from_state_dicts(list(two_runs))
    kept, message = prepare_for_training(bare, "auto")
    assert kept is bare and "skipped" in message and "architecture" in message
    with pytest.raises(ValueError, match="--align"):
        prepare_for_training(two_runs, "always")


def test_a_cold_task_grid_gets_a_run_per_task(two_runs):
    # Task models from independent initialisations, one run as a user's grid has: after
    # aligning, each task (distinct condition) is its own run, so a generator keeps a state per
    # task. A warm grid (fine-tunes of one model) stays one run and is left as it is.
    bits = [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 1.0], [1.0, 1.0]]
    cold = CheckpointSet.from_state_dicts(list(two_runs), conditions=bits, info=INFO)
    ready, message = prepare_for_training(cold, "auto")
    assert ready.runs == [0, 0, 1, 1, 2, 2] and "own run" in message and "3 tasks" in message
    assert torch.equal(ready.conditions, cold.conditions) and "aligned" in ready.info
    base = _train_mlp(seed=0)
    warm = CheckpointSet.from_state_dicts([_train_mlp(seed=s, steps=20, init=base)
                                           for s in range(6)], conditions=bits, info=INFO)
    kept, message = prepare_for_training(warm, "auto")
    assert kept is warm and kept.runs == [0] * 6 and "own run" not in message
    with pytest.raises(Exception, match="6 checkpoints"):
        cold.with_runs([0, 1])


def test_pg_align_gives_a_cold_grid_a_run_per_task(two_runs):
    # What a user calling pg.align and then RPG().fit gets, without paramgen train: align
    # itself sees that matching moved most units and numbers the tasks as runs.
    bits = [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 1.0], [1.0, 1.0]]
    cold = CheckpointSet.from_state_dicts(list(two_runs), conditions=bits, info=INFO)
    for method in ("weights", "activations"):
        out = align(cold, method=method, inputs=torch.randn(128, 10))
        assert out.runs == [0, 0, 1, 1, 2, 2], method
        assert out.info["aligned"]["runs"] == "one per task"
        assert out.info["aligned"]["moved"] >= 0.5
    assert align(cold, task_runs="keep").runs == [0] * 6
    base = _train_mlp(seed=0)
    warm = CheckpointSet.from_state_dicts([_train_mlp(seed=s, steps=20, init=base)
                                           for s in range(6)], conditions=bits, info=INFO)
    out = align(warm)
    assert out.runs == [0] * 6 and "runs" not in out.info["aligned"]
    assert out.info["aligned"]["moved"] < 0.5
    with pytest.raises(ValueError, match="task_runs"):
        align(cold, task_runs="always")


def test_barrier_drops_after_alignment(two_runs):
    gen = torch.Generator().manual_seed(123)
    x = torch.randn(256, 10, generator=gen)
    y = (x[:, :3].sum(1) > 0).long() + (x[:, 3] > 0.5).long()
    model = zoo.create("mlp", (10,), 3, hidden=(24,))
    same = barrier(model, two_runs[0], two_runs[0], x, y, points=3)
    assert same["loss_barrier"] == pytest.approx(0.0, abs=1e-6)
    aligned = align(two_runs)
    before = barrier(model, two_runs[0], two_runs[2], x, y)["loss_barrier"]
    after = barrier(model, aligned[0], aligned[2], x, y)["loss_barrier"]
    assert after < before


def test_cli_align(tmp_path, two_runs, capsys):
    from paramgen.cli import main

    two_runs.save(tmp_path / "in")
    assert main(["align", "--ckpts", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                 "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "several basins" in printed and "aligned 6 checkpoints" in printed
    out = CheckpointSet.load(tmp_path / "out")
    assert out.info["aligned"]["method"] == "weights" and len(out) == 6
    assert main(["align", "--ckpts", str(tmp_path / "in"), "--out", str(tmp_path / "in")]) == 2


def test_pg_align_is_callable_and_a_package(two_runs):
    import paramgen
    import paramgen.align

    assert callable(paramgen.align) and hasattr(paramgen.align, "structure")
    out = paramgen.align(two_runs, reference=1)
    assert out.info["aligned"]["reference"] == 1
