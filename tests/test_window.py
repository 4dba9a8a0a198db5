"""Windowed RPG training: carried states equal an exact pass, resume is exact, errors are clear."""

import pytest
import torch

from paramgen import CheckpointSet
from paramgen.methods import RPG, RPGConfig

TINY = dict(token_size=16, d_model=(32, 32), d_state=4, denoiser_channels=(1, 8, 16),
            num_train_timesteps=50, batch_size=2, diffusion_batch=32, lr=1e-3, steps=6,
            sampler="ddim", sampling_steps=5, save_every=2)


def collection(n=4):
    g = torch.Generator().manual_seed(0)
    base = {"a": torch.randn(20, 30, generator=g), "b": torch.randn(20, generator=g)}
    return CheckpointSet.from_state_dicts(
        [{k: v + 0.05 * torch.randn(v.shape, generator=g) for k, v in base.items()}
         for _ in range(n)])


@pytest.mark.parametrize("backbone", ["mamba", "lstm"])
def test_carried_state_is_the_exact_state_when_weights_do_not_move(backbone):
    # lr = 0: the weights never change, so the state a checkpoint's bank holds at its cursor
    # must be exactly what one pass over the tokens before the cursor gives.
    ck = collection()
    gen = RPG(config=RPGConfig(**dict(TINY, lr=0.0, weight_decay=0.0, train_window=5,
                                      backbone=backbone)))
    captured = {}

    def keep_carry(step, loss):  # after each step, the bank as that step's update left it
        captured["carry"] = gen._train["carry"]

    gen.fit(ck, steps=7, progress=False, callback=keep_carry)
    carry = captured["carry"]
    net = gen.network
    states = torch.arange(len(ck))
    L = gen.tokenizer.num_tokens
    assert L == 40  # 600 / 16 -> 38 tokens of a, 2 of b: 8 windows of 5
    for i in range(len(ck)):
        start = int(carry.starts(torch.tensor([i])))
        want = net.backbone.init_state(1, "cpu")
        if start:
            h = net.backbone_input(states[i:i + 1], None, 1, 0, start)
            _, want = net.backbone.forward_stateful(h, want)
        got = carry.gather(torch.tensor([i]))
        for a, b in zip(torch.utils._pytree.tree_flatten(got)[0],
                        torch.utils._pytree.tree_flatten(want)[0]):
            torch.testing.assert_close(a, b.float(), atol=1e-5, rtol=1e-5)
    assert int(carry.cursor.max()) > 0  # some checkpoint is past its first window


def test_windowed_resume_is_exact(tmp_path):
    ck = collection()
    cfg = RPGConfig(**dict(TINY, train_window=5, backbone="lstm"))
    straight = RPG(config=cfg).fit(ck, progress=False)

    class Stop(Exception):
        pass

    def stop(step, loss):
        if step == 3:
            raise Stop

    with pytest.raises(Stop):
        RPG(config=cfg).fit(ck, progress=False, workdir=tmp_path, callback=stop)
    resumed = RPG(config=cfg).fit(ck, progress=False, workdir=tmp_path)
    for k, v in straight.network.state_dict().items():
        assert torch.allclose(v, resumed.network.state_dict()[k], atol=1e-6), k


def test_window_needs_a_streaming_backbone():
    with pytest.raises(ValueError, match="train_window"):
        RPG(config=RPGConfig(**dict(TINY, train_window=5, backbone="transformer"))).fit(
            collection(), progress=False)
