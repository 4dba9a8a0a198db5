"""Adapters: LoRA/DoRA recipes, PEFT folders in and out, loaded back through peft (small, fast);
a collection run end to end is marked slow."""

import json

import pytest
import torch

pytest.importorskip("peft", reason="the adapters extra (pip install paramgen[adapters]) "
                                   "is not installed")

from peft import PeftModel, set_peft_model_state_dict  # noqa: E402

import paramgen as pg  # noqa: E402
from paramgen.adapters import (LoraRecipe, adapter_state, attach, read_peft_folder,  # noqa: E402
                               write_peft_folder)
from paramgen.adapters.base_model import build_base  # noqa: E402
from paramgen.adapters.recipe import json_config  # noqa: E402
from paramgen.checkpoints import CheckpointError  # noqa: E402
from paramgen.methods import RPG, RPGConfig  # noqa: E402

TINY = dict(token_size=64, d_model=(32, 32), d_state=4, denoiser_channels=(1, 8, 16),
            num_train_timesteps=50, batch_size=4, diffusion_batch=32, lr=1e-3, steps=5,
            sampler="ddim", sampling_steps=3, backbone="lstm")
BITS = ["0101010101", "1100000000", "0000011111", "1001001001"]


def small_base():
    return build_base({"in_shape": [1, 8, 8], "num_classes": 2, "dim": 16, "heads": 2,
                       "mlp_dim": 16}, seed=0).eval()


def trained_like(base, recipe, seed):
    """An adapter with every weight moved off its initialisation (LoRA B is zero at init, which
    would hide a B that failed to load)."""
    model = attach(base, recipe, "head", seed=0)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.3 * torch.randn(p.shape, generator=g))
    return model.eval()


@pytest.fixture(params=[False, True], ids=["lora", "dora"])
def adapters(request, tmp_path):
    base, recipe = small_base(), LoraRecipe(r=2, dora=request.param)
    dirs, states = [], []
    for i, bits in enumerate(BITS):
        model = trained_like(base, recipe, seed=i)
        states.append(adapter_state(model))
        dirs.append(write_peft_folder(tmp_path / bits, states[-1],
                                      json_config(model.peft_config["default"])))
    return base, recipe, dirs, states


def test_lora_spec_parses_and_refuses_bad_keys():
    r = LoraRecipe.parse("r=4,targets=q,v")
    assert (r.r, r.targets, r.scale, r.dora) == (4, ("q", "v"), 8.0, False)
    r = LoraRecipe.parse("targets=q,k,v,r=8,alpha=4", dora=True)
    assert (r.r, r.targets, r.scale, r.dora) == (8, ("q", "k", "v"), 4.0, True)
    with pytest.raises(ValueError, match="unknown key 'rank'"):
        LoraRecipe.parse("rank=4")
    with pytest.raises(ValueError, match="bad value 'four' for 'r'"):
        LoraRecipe.parse("r=four")
    with pytest.raises(ValueError, match="head must be one of"):
        LoraRecipe.parse("r=4,head=private")


def test_bad_targets_name_the_base_layers():
    with pytest.raises(ValueError, match=r"Linear layers are named .*'q'"):
        attach(small_base(), LoraRecipe(targets=("query",)), "head")


def test_peft_folder_loads_through_peft_with_the_same_outputs(adapters):
    base, recipe, dirs, states = adapters
    x = torch.rand(16, 1, 8, 8)
    for d, sd in zip(dirs, states):
        assert set(read_peft_folder(d)[0]) == set(sd)
        loaded = PeftModel.from_pretrained(small_base(), str(d)).eval()
        by_hand = attach(base, recipe, "head", seed=5)   # another init, overwritten below
        set_peft_model_state_dict(by_hand, sd)
        with torch.no_grad():
            out = loaded(x)
            assert torch.equal(out, by_hand.eval()(x))
            assert not torch.allclose(out, base(x), atol=1e-3)  # the adapter does something
    if recipe.dora:
        assert any("lora_magnitude_vector" in k for k in states[0])


def test_import_peft_keeps_weights_config_and_task_bits(adapters):
    _, recipe, dirs, states = adapters
    ckpts = pg.CheckpointSet.import_peft(dirs, conditions=BITS)
    assert len(ckpts) == len(BITS)
    for i, sd in enumerate(states):
        assert all(torch.equal(ckpts[i][k], v) for k, v in sd.items())
        assert ckpts.provenance(i)["task"] == BITS[i]
    assert ckpts.conditions.tolist()[0] == [float(b) for b in BITS[0]]
    cfg = json.loads((dirs[0] / "adapter_config.json").read_text())
    assert ckpts.info["peft_config"] == cfg and cfg["use_dora"] == recipe.dora
    assert pg.CheckpointSet.import_peft(dirs[:2]).conditions is None


def test_import_peft_refuses_mixed_layouts_and_pickles(adapters, tmp_path):
    _, _, dirs, _ = adapters
    cfg_path = dirs[1] / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg_path.write_text(json.dumps({**cfg, "r": 8}))
    with pytest.raises(CheckpointError, match=r"'r' is 8.*one collection holds"):
        pg.CheckpointSet.import_peft(dirs)
    binary = tmp_path / "pickled"
    binary.mkdir()
    (binary / "adapter_config.json").write_text(json.dumps(cfg))
    (binary / "adapter_model.bin").write_bytes(b"not unpickled")
    with pytest.raises(FileNotFoundError, match="does not unpickle"):
        pg.CheckpointSet.import_peft([binary])
    with pytest.raises(ValueError, match="conditions\\[1\\]"):
        pg.CheckpointSet.import_peft(dirs[2:], conditions=["0101", "0000"])


def test_generated_adapters_are_peft_folders_with_the_sampled_weights(adapters, tmp_path):
    base, recipe, dirs, _ = adapters
    ckpts = pg.CheckpointSet.import_peft(dirs, conditions=BITS)
    gen = RPG(config=RPGConfig(**TINY)).fit(ckpts, progress=False)
    out = gen.sample_to_peft([tmp_path / "a", tmp_path / "b"], condition="0101010101", seed=3)
    sampled = gen.sample(2, condition="0101010101", seed=3)
    x = torch.rand(8, 1, 8, 8)
    for folder, sd in zip(out, sampled):
        assert sorted(p.name for p in folder.iterdir()) == ["adapter_config.json",
                                                            "adapter_model.safetensors"]
        loaded = PeftModel.from_pretrained(small_base(), str(folder)).eval()
        by_hand = attach(base, recipe, "head")
        set_peft_model_state_dict(by_hand, sd)
        with torch.no_grad():
            assert torch.equal(loaded(x), by_hand.eval()(x))
    # Saved and reloaded, the generator still knows its adapter config.
    gen.save_pretrained(tmp_path / "gen")
    again = pg.load_generator(tmp_path / "gen")
    assert again.sample_to_peft([tmp_path / "c"], condition="0101010101", seed=3)[0].is_dir()


def test_sample_to_peft_refuses_generators_of_whole_models(tmp_path):
    sds = [{"w": torch.randn(4, 4), "b": torch.randn(4)} for _ in range(3)]
    gen = RPG(config=RPGConfig(**TINY)).fit(pg.CheckpointSet.from_state_dicts(sds),
                                            progress=False)
    with pytest.raises(ValueError, match="not trained on an adapter collection"):
        gen.sample_to_peft([tmp_path / "x"])
    cfg = {"peft_type": "LORA", "r": 4}
    with pytest.raises(ValueError, match="hold no LoRA weights"):
        gen.sample_to_peft([tmp_path / "x"], peft_config=cfg)


@pytest.mark.slow
def test_collect_adapters_end_to_end_and_resume(tmp_path):
    from paramgen.adapters import collect_adapters, score_adapter

    out = tmp_path / "grid"
    tasks = ["0101010101", "1111100000", "0000000001"]
    ckpts = collect_adapters("digits", out, tasks=tasks[:2], recipe="r=2,targets=q,v",
                             pretrain_steps=150, base_kwargs={"dim": 16, "heads": 2},
                             steps=30, progress=False)
    assert len(ckpts) == 2 and ckpts.info["peft_config"]["r"] == 2
    scores = [ckpts.metrics(i)["balanced_accuracy"] for i in range(2)]
    assert min(scores) > 0.8, scores
    # Resumed with one more task: the first two are kept, not retrained.
    before = (out / "ckpt_00000.safetensors").stat().st_mtime_ns
    ckpts = collect_adapters("digits", out, tasks=tasks, recipe="r=2,targets=q,v",
                             pretrain_steps=150, base_kwargs={"dim": 16, "heads": 2},
                             steps=30, progress=False)
    assert [ckpts.provenance(i)["task"] for i in range(3)] == tasks
    assert (out / "ckpt_00000.safetensors").stat().st_mtime_ns == before
    # The PEFT folder of a task scores what the manifest says, loaded through peft.
    got = score_adapter(out / "base", out / "peft" / tasks[0], tasks[0], "digits")
    assert got == pytest.approx(ckpts.metrics(0)["balanced_accuracy"], abs=1e-6)
    init = read_peft_folder(out / "init")[0]
    a = [k for k in init if "lora_A" in k][0]
    assert not torch.equal(init[a], ckpts[0][a])   # trained away from the shared start
