"""The kernel anchor of task-conditioned RPG (methods/rpg/anchor.py)."""

from __future__ import annotations

import itertools

import pytest
import torch

from paramgen import CheckpointSet
from paramgen.methods import RPG, load_generator
from paramgen.methods.rpg.anchor import KernelAnchor, seen_tasks

TINY = dict(token_size=16, d_model=(32, 32), d_state=4, denoiser_channels=(1, 8, 16),
            num_train_timesteps=50, batch_size=4, diffusion_batch=32, lr=1e-3, steps=5,
            sampler="ddim", sampling_steps=5, partial_batch=7)


def smooth_tasks(bits: torch.Tensor, tokens: int = 3, size: int = 4) -> torch.Tensor:
    """A smooth function of the condition, [K, tokens, size]."""
    g = torch.Generator().manual_seed(1)
    a = torch.randn(bits.shape[1], tokens * size, generator=g)
    return torch.tanh(bits @ a / 2).view(len(bits), tokens, size)


def all_bits(n: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)))


def test_kernel_anchor_interpolates_a_smooth_task_function_better_than_the_mean():
    bits = all_bits(6)
    truth = smooth_tasks(bits)
    held = torch.arange(len(bits)) % 8 == 0
    anchor = KernelAnchor(int((~held).sum()), 6, 3, 4)
    said = str(anchor.fit(bits[~held], truth[~held]))
    assert "kernel anchor over 56 seen tasks" in said and "leave-one-out" in said
    guess = anchor(bits[held])
    err = (guess - truth[held]).pow(2).mean()
    mean_err = (truth[~held].mean(0) - truth[held]).pow(2).mean()
    assert err < 0.3 * mean_err
    # every index form gives the same rows as the whole table
    index = torch.tensor([2, 0])
    assert torch.allclose(anchor(bits[held], index), guess[:, index], atol=1e-6)
    per_row = torch.tensor([[1, 2]] * int(held.sum()))
    assert torch.allclose(anchor(bits[held], per_row), guess[:, 1:3], atol=1e-6)


def test_seen_tasks_groups_checkpoints_by_condition():
    cond = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    tasks, task_of = seen_tasks(cond)
    assert len(tasks) == 2 and torch.equal(tasks[task_of], cond)


def grid(n_bits: int = 4, per_task: int = 2):
    """A warm grid: every task's model is one start plus a smooth function of its bits."""
    g = torch.Generator().manual_seed(0)
    start = {"fc.weight": torch.randn(5, 7, generator=g), "fc.bias": torch.randn(5, generator=g)}
    bits = all_bits(n_bits)
    shift = smooth_tasks(bits, tokens=1, size=5).reshape(len(bits), 5)
    sds, conds = [], []
    for b, s in zip(bits, shift):
        for _ in range(per_task):
            sds.append({"fc.weight": start["fc.weight"] + s[:, None] +
                        0.01 * torch.randn(5, 7, generator=g),
                        "fc.bias": start["fc.bias"] + s + 0.01 * torch.randn(5, generator=g)})
            conds.append(b)
    return CheckpointSet.from_state_dicts(sds, conditions=torch.stack(conds)), bits


@pytest.mark.parametrize("mode", ["kernel", "kernel-only"])
def test_condition_anchor_is_added_to_the_prototypes_and_travels_with_the_generator(
        tmp_path, mode, capsys):
    ckpts, bits = grid()
    gen = RPG(**TINY, condition_anchor=mode).fit(ckpts, steps=2, progress=True)
    assert "kernel anchor over 16 seen tasks" in capsys.readouterr().out
    net = gen.network
    assert net.anchor is not None and net.token_means is None
    assert (net.condition is None) == (mode == "kernel-only")
    assert not any("anchor" in n for n, _ in net.named_parameters())  # data, not learned
    cond = bits[[3, 9]]
    states = torch.zeros(2, dtype=torch.long) if net.states is not None else None
    with torch.no_grad():
        raw = net.backbone(net.backbone_input(states, cond, 2))
        assert torch.allclose(net.prototypes(states, cond, 2) - raw, net.anchor(cond), atol=1e-5)
    gen.save_pretrained(tmp_path / "g")
    again = load_generator(tmp_path / "g")
    assert torch.equal(again.network.anchor.weights, net.anchor.weights)
    for how in ("sequential", "full"):
        a = gen.sample(2, seed=3, mode=how, condition="0110")
        b = again.sample(2, seed=3, mode=how, condition="0110")
        assert all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in x)


def test_condition_anchor_in_windowed_training_matches_the_whole_sequence():
    ckpts, bits = grid()
    gen = RPG(**TINY, condition_anchor="kernel", train_window=2).fit(ckpts, steps=2,
                                                                      progress=False)
    net = gen.network
    cond = bits[[1, 5]]
    whole = net.anchor(cond)
    index = torch.tensor([[0, 1], [2, 3]])
    protos = torch.zeros(2, 2, gen.config.token_size)
    got = net.add_fixed(protos, None, cond, index)
    assert torch.allclose(got[0], whole[0, :2], atol=1e-6)
    assert torch.allclose(got[1], whole[1, 2:4], atol=1e-6)


def test_no_anchor_without_several_conditions_or_with_none(capsys):
    ckpts, _ = grid()
    plain = CheckpointSet.from_state_dicts(list(ckpts))
    gen = RPG(**TINY, condition_anchor="kernel").fit(plain, steps=1, progress=False)
    assert gen.network.anchor is None
    one = CheckpointSet.from_state_dicts(list(ckpts)[:2],
                                         conditions=torch.ones(2, 4))
    gen = RPG(**TINY, condition_anchor="kernel").fit(one, steps=1, progress=True)
    assert gen.network.anchor is None
    assert "no kernel anchor: the collection has one condition" in capsys.readouterr().out


def test_condition_anchor_setting_is_checked():
    with pytest.raises(ValueError, match="condition_anchor"):
        RPG(preset="cpu", condition_anchor="linear")


def test_an_anchor_too_large_is_not_built_and_the_backbone_reads_the_condition(
        monkeypatch, capsys):
    import paramgen.methods.rpg.generator as rpg_generator

    monkeypatch.setattr(rpg_generator, "ANCHOR_MAX_VALUES", 10)
    ckpts, _ = grid()
    gen = RPG(**TINY, condition_anchor="kernel-only").fit(ckpts, steps=1, progress=True)
    assert gen.network.anchor is None and gen.network.condition is not None
    assert "no kernel anchor: 16 tasks x" in capsys.readouterr().out


def test_held_out_anchor_is_each_seen_task_interpolated_from_the_others(monkeypatch, tmp_path):
    import paramgen.methods.rpg.anchor as anchor_module

    bits = all_bits(5)
    truth = smooth_tasks(bits) + 0.1 * torch.randn(len(bits), 3, 4,
                                                   generator=torch.Generator().manual_seed(2))
    anchor = KernelAnchor(len(bits), 5, 3, 4)
    chosen = anchor.fit(bits, truth, held_out=True)
    anchor.train()
    held = anchor(bits)
    anchor.eval()
    assert torch.allclose(anchor(bits), anchor._interpolate(bits, None))
    assert not torch.allclose(held, anchor(bits), atol=1e-3)  # training reads the held-out rows
    # task 7 refitted without it, at the chosen setting: the same prediction (up to the centre,
    # which keeps the task in the closed form)
    monkeypatch.setattr(anchor_module, "SCALE_SHARES", (chosen.scale_share,))
    monkeypatch.setattr(anchor_module, "RIDGES", (chosen.ridge,))
    rest = [j for j in range(len(bits)) if j != 7]
    alone = KernelAnchor(len(rest), 5, 3, 4)
    alone.fit(bits[rest], truth[rest])
    # the median distance moves a little without task 7; the prediction barely
    assert (alone(bits[7:8])[0] - held[7]).abs().max() < 0.05 * truth.std()
    # a condition no seen task has gets the full anchor in training too; index forms agree
    anchor.train()
    other = torch.full((1, 5), 0.5)
    assert torch.allclose(anchor(other), anchor._interpolate(other, None))
    mixed = anchor(torch.cat([bits[7:8], other]), torch.tensor([[2, 0], [1, 2]]))
    assert torch.allclose(mixed[0], held[7, [2, 0]])
    assert torch.allclose(mixed[1], anchor._interpolate(other, None)[0, [1, 2]])
    index = torch.tensor([[0, 2], [1, 1]])
    assert torch.allclose(anchor(bits[:2], index), torch.stack([held[0, [0, 2]], held[1, [1, 1]]]))
    assert torch.allclose(anchor(bits[:2], torch.tensor([2])), held[:2, [2]])
    # not saved with the generator: sampling never reads it
    assert "held_out" not in anchor.state_dict()


def test_generator_trains_on_held_out_anchors_and_samples_as_before(tmp_path):
    ckpts, _ = grid()
    gen = RPG(**TINY, condition_anchor="kernel-only", anchor_held_out=True).fit(
        ckpts, steps=2, progress=False)
    assert gen.network.anchor.held_out.shape == gen.network.anchor.weights.shape
    gen.save_pretrained(tmp_path / "g")
    again = load_generator(tmp_path / "g")
    assert again.config.anchor_held_out and again.network.anchor.held_out.numel() == 0
    a = gen.sample(2, seed=3, condition="0110")
    b = again.sample(2, seed=3, condition="0110")
    assert all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in x)


def test_held_out_rows_are_found_for_float_conditions_of_many_tasks():
    g = torch.Generator().manual_seed(3)
    cond = torch.randn(40, 12, generator=g) * 0.37  # text-embedding-like, > 25 rows
    means = torch.randn(40, 2, 3, generator=g)
    anchor = KernelAnchor(40, 12, 2, 3)
    anchor.fit(cond, means, held_out=True)
    anchor.train()
    assert torch.allclose(anchor(cond), anchor.held_out)
