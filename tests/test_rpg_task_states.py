"""permutation_state="task": a state per seen task and a shared one for other conditions."""

from __future__ import annotations

import pytest
import torch

from paramgen import CheckpointSet
from paramgen.methods import RPG, load_generator
from paramgen.methods.rpg.config import RPGConfig
from paramgen.methods.rpg.states import pick_states, plan_states

from test_rpg import GRID_CONDITIONS, independent_task_models
from test_rpg_anchor import TINY, grid


def test_plan_gives_each_task_a_state_and_one_shared_state_after_them():
    ckpts, bits = grid()
    plan = plan_states("task", ckpts, {})
    assert plan.kind == "task"
    assert plan.count == 17  # 16 tasks and the shared state
    conds = torch.as_tensor(ckpts.conditions)
    for s in range(16):  # one state is one task's checkpoints, all of them
        rows = conds[plan.state_of == s]
        assert len(rows) > 0 and bool((rows == rows[0]).all())
    assert len({tuple(conds[plan.state_of == s][0].tolist()) for s in range(16)}) == 16


def test_task_states_need_conditions():
    ckpts, _ = grid()
    with pytest.raises(ValueError, match="needs a task-conditioned collection"):
        plan_states("task", CheckpointSet.from_state_dicts(list(ckpts)), {})


def test_seen_tasks_sample_their_own_state_and_other_conditions_the_shared_one():
    ckpts, bits = grid()
    gen = RPG(**TINY, condition_anchor="kernel-only", permutation_state="task").fit(
        ckpts, steps=2, progress=False)
    rows, owner = gen._state_conditions
    cond = torch.stack([rows[3], rows[7], torch.full_like(rows[0], 0.5)])
    got = pick_states(3, None, torch.Generator(), cond, gen._num_states, "task",
                      gen._state_conditions)
    assert got.tolist() == [int(owner[3]), int(owner[7]), gen._num_states - 1]


def test_task_state_generator_saves_and_samples_the_same(tmp_path):
    ckpts, bits = grid()
    gen = RPG(**TINY, permutation_state="task").fit(ckpts, steps=2, progress=False)
    assert gen.network.states.num_embeddings == 17
    gen.save_pretrained(tmp_path / "g")
    again = load_generator(tmp_path / "g")
    for condition in ("0110", [0.5, 0.5, 0.5, 0.5]):
        a = gen.sample(2, seed=3, condition=condition)
        b = again.sample(2, seed=3, condition=condition)
        assert all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in x)


def test_training_draws_the_shared_state_for_about_its_share():
    from types import SimpleNamespace

    from paramgen.methods.rpg.window import training_states

    states = torch.arange(10).repeat(100)
    ctx = SimpleNamespace(noise=torch.Generator().manual_seed(0))
    cfg = RPGConfig(permutation_state="task", shared_state_share=0.3)
    st = training_states(states, torch.arange(1000), 10, cfg, ctx)
    shared = st == 10
    assert 0.25 < shared.float().mean() < 0.35
    assert torch.equal(st[~shared], states[~shared])
    plain = training_states(states, torch.arange(1000), None, cfg, ctx)
    assert torch.equal(plain, states)


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_shared_state_share_is_checked(share):
    with pytest.raises(ValueError, match="shared_state_share"):
        RPGConfig(shared_state_share=share)


def test_with_held_out_anchors_only_the_shared_state_reads_them():
    ckpts, bits = grid()
    gen = RPG(**TINY, condition_anchor="kernel-only", anchor_held_out=True,
              permutation_state="task").fit(ckpts, steps=2, progress=False)
    net = gen.network.train()
    anchor = net.anchor
    rows, owner = gen._state_conditions
    cond = rows[[2, 2, 5]]
    states = torch.tensor([int(owner[2]), net.shared_state, net.shared_state])
    protos = torch.zeros(3, anchor.mean.shape[0], gen.config.token_size)
    got = net.add_fixed(protos, states, cond, None)
    task = [int(torch.cdist(c[None], anchor.conditions).argmin()) for c in cond]
    assert torch.allclose(got[0], anchor._interpolate(cond[:1], None)[0], atol=1e-5)
    assert torch.allclose(got[1], anchor.held_out[task[1]], atol=1e-6)
    assert torch.allclose(got[2], anchor.held_out[task[2]], atol=1e-6)
    assert not torch.allclose(got[0], got[1], atol=1e-4)
    net.eval()


def test_task_states_plan_as_auto_on_independent_task_models_or_several_runs():
    # Task models from independent initialisations: a shared state would mix their basins, so
    # "task" plans as "auto" does there (a state per task, an unseen task its nearest one's).
    g = torch.Generator().manual_seed(0)
    conds = GRID_CONDITIONS
    inits, cold = independent_task_models(g)
    plan = plan_states("task", CheckpointSet.from_state_dicts(cold, conditions=conds), {})
    assert plan.kind == "run" and plan.independent and plan.count == 3
    gen = RPG(**TINY, condition_anchor="kernel-only", anchor_held_out=True,
              permutation_state="task").fit(
        CheckpointSet.from_state_dicts(cold, conditions=conds), steps=2, progress=False)
    assert gen._num_states == 3 and gen.network.shared_state is None
    with pytest.warns(UserWarning, match="nearest seen task"):
        gen.sample(1, condition=[0.9, 0.2, 0.0])
    warm = [{k: v + 0.05 * torch.randn(v.shape, generator=g) for k, v in inits[0].items()}
            for _ in range(6)]
    plan = plan_states("task", CheckpointSet.from_state_dicts(warm, conditions=conds), {})
    assert plan.kind == "task" and not plan.independent and plan.count == 4
    runs = CheckpointSet.from_state_dicts(warm, conditions=conds, runs=[0, 0, 1, 1, 2, 2])
    plan = plan_states("task", runs, {})  # several runs: a state per run, as "auto" gives
    assert plan.kind == "run" and plan.count == 3
