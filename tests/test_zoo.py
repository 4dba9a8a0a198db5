"""Every zoo model builds, runs forward and backward for every supported input shape."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from paramgen import zoo

SHAPES = [(1, 8, 8), (40,), (3, 32, 32)]
MODELS = ["cnn-m", "cnn-s", "convnet-mini", "convnext-mini", "mlp", "mlp-family", "mlp-mini",
          "resnet-mini", "resmlp", "vit-mini", "vit-tiny"]


def test_registry_lists_all_models() -> None:
    assert set(MODELS) <= set(zoo.list_models())
    assert zoo.list_models() == sorted(zoo.list_models())


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_backward(name: str, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    model = zoo.create(name, in_shape=shape, num_classes=7)
    x = torch.randn(3, *shape)
    out = model(x)
    assert out.shape == (3, 7)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # Some gradient must be non-zero, else the model could not train.
    assert any(float(g.abs().sum()) > 0 for g in grads)


def test_signal_inputs_accept_channel_dim() -> None:
    model = zoo.create("cnn-s", (40,), 10).eval()
    x = torch.randn(2, 40)
    assert torch.equal(model(x), model(x.unsqueeze(1)))
    with pytest.raises(ValueError, match="40"):
        model(torch.randn(2, 41))


def test_cnn_param_counts_match_model_zoo() -> None:
    # Schürholt et al. 2022: CNN-s 2,464 (1 channel) / 2,864 (3 channels); CNN-m ≈ 11K.
    assert zoo.param_count(zoo.create("cnn-s", (1, 8, 8), 10)) == 2464
    assert zoo.param_count(zoo.create("cnn-s", (1, 28, 28), 10)) == 2464
    assert zoo.param_count(zoo.create("cnn-s", (3, 32, 32), 10)) == 2864
    assert 10_000 <= zoo.param_count(zoo.create("cnn-m", (1, 8, 8), 10)) <= 11_500
    assert 10_000 <= zoo.param_count(zoo.create("cnn-m", (3, 32, 32), 10)) <= 11_500


def test_pdiff_minis_follow_the_paper() -> None:
    # ConvNeXt-mini with stages (1,2,2,2) x (16,32,32,32) has exactly the paper's count.
    assert zoo.param_count(zoo.create("convnext-mini", (3, 32, 32), 10)) == 74970
    resnet = zoo.create("resnet-mini", (3, 32, 32), 10)
    bns = [m for m in resnet.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 5
    assert resnet.fc1.in_features == 128 and resnet.fc1.out_features == 16
    convnet = zoo.create("convnet-mini", (3, 32, 32), 10)
    assert convnet.classifier[0].in_features == 64
    mlp = zoo.create("mlp-mini", (1, 32, 32), 10)
    assert [m.out_features for m in mlp.modules() if isinstance(m, nn.Linear)] == [64, 16, 10]
    vit = zoo.create("vit-mini", (3, 32, 32), 10)
    assert vit.pos_embed.shape == (1, 65, 64) and len(vit.blocks) == 4


def test_resnet_mini_has_batchnorm_buffers_in_state_dict() -> None:
    sd = zoo.create("resnet-mini", (1, 8, 8), 10).state_dict()
    assert "layer2.bn2.running_var" in sd and "layer2.bn1.weight" in sd


def test_mlp_options_and_family() -> None:
    model = zoo.create("mlp", (40,), 10, hidden=(32, 32), layernorm=True)
    assert sum(isinstance(m, nn.LayerNorm) for m in model.modules()) == 2
    assert zoo.param_count(model) == zoo.mlp_param_count((40,), 10, (32, 32), layernorm=True)
    for target in (2_000, 100_000, 10_000_000):
        fam = zoo.mlp_family(target, (40,), 10, depth=2)
        assert abs(zoo.param_count(fam) - target) / target < 0.05
    with pytest.raises(ValueError, match="target_params"):
        zoo.mlp_family(10, (40,), 10)
    big = zoo.create("mlp-family", (3, 32, 32), 10, target_params=1_000_000, depth=3)
    assert len(big.hidden) == 3 and abs(zoo.param_count(big) - 1_000_000) < 20_000


def test_seeded_create_is_reproducible_and_leaves_global_rng() -> None:
    torch.manual_seed(1)
    before = torch.rand(1)
    torch.manual_seed(1)
    a = zoo.create("vit-tiny", (1, 8, 8), 10, seed=5)
    b = zoo.create("vit-tiny", (1, 8, 8), 10, seed=5)
    assert torch.equal(torch.rand(1), before)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_unknown_names_and_bad_arguments() -> None:
    with pytest.raises(ValueError) as err:
        zoo.create("resnet-9000", (1, 8, 8), 10)
    assert "cnn-s" in str(err.value) and "vit-tiny" in str(err.value)
    with pytest.raises(ValueError, match="in_shape"):
        zoo.create("mlp", (1, 2, 3, 4), 10)
    with pytest.raises(ValueError, match="activation"):
        zoo.create("cnn-s", (1, 8, 8), 10, activation="swoosh")
    with pytest.raises(TypeError, match="mlp"):
        zoo.create("mlp", (40,), 10, widths=3)
    # Any spelling of a name builds the same model: same class, same keys and shapes.
    odd = zoo.create("ResNet_Mini", (40,), 10).state_dict()
    plain = zoo.create("resnet-mini", (40,), 10).state_dict()
    assert {k: v.shape for k, v in odd.items()} == {k: v.shape for k, v in plain.items()}
    assert type(zoo.create("  CNN-S ", (1, 8, 8), 10)) is zoo.ModelZooCNN


def test_register_rejects_duplicates() -> None:
    with pytest.raises(ValueError, match="cnn-s"):
        @zoo.register("cnn-s")
        def other(in_shape, num_classes):  # pragma: no cover - never called
            return nn.Linear(1, 1)
