"""One generator contract for every method: arguments checked at the API boundary, options each
method declares (read by the commands through the registry), and a registered method's options
on the command line."""

from __future__ import annotations

import pytest
import torch

import paramgen as pg
from paramgen.cli import build_parser, main
from paramgen.methods import IGPG, PDiff, RPG, RPGConfig
from paramgen.methods.options import MethodOptions, Option
from paramgen.methods.registry import (get_method, method_names, method_options,
                                       register_method, unregister_method)

TINY_RPG = dict(token_size=16, d_model=(32, 32), d_state=4, denoiser_channels=(1, 8, 16),
                num_train_timesteps=50, batch_size=4, diffusion_batch=32, lr=1e-3, steps=4,
                sampler="ddim", sampling_steps=5, backbone="lstm")

# Each built-in method, unfitted (arguments are checked before anything else), and the options
# an error must name.
METHODS = {
    "rpg": (lambda: RPG(config=RPGConfig(**TINY_RPG)), ["condition", "mode", "sampler", "steps"]),
    "pdiff": (lambda: PDiff(preset="cpu"), ["condition", "mode", "sampler", "steps"]),
    "igpg": (lambda: IGPG(preset="tiny"), ["like", "dataset", "temperature"]),
}


def sds(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [{"w": torch.randn(5, 7, generator=g), "b": torch.randn(5, generator=g)}
            for _ in range(n)]


@pytest.fixture
def dummy_method():
    """A method in the global registry for one test, removed again after it."""
    name = "test-dummy"

    @register_method(name)
    class Dummy:
        options = MethodOptions(summary="a method of the tests", presets=("small",),
                                sample={"colour": Option("a colour", choices=("red", "blue")),
                                        "tint_level": Option("how much", kind="count")})

    yield name, Dummy
    unregister_method(name)
    assert name not in method_names()
    with pytest.raises(ValueError, match="unknown generator method"):
        get_method(name)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_an_unknown_option_names_what_the_method_takes(name, tmp_path):
    make, takes = METHODS[name]
    gen = make()
    assert get_method(name).options is method_options(name)
    for call in (lambda: gen.sample(1, colour="red"),
                 lambda: gen.sample_to_files([tmp_path / "a.safetensors"], colour="red"),
                 lambda: gen.sample_to_peft([tmp_path / "p"], colour="red")):
        with pytest.raises(TypeError, match="unexpected sample options") as exc:
            call()
        assert "colour" in str(exc.value)
        assert all(option in str(exc.value) for option in takes), str(exc.value)


def test_a_missing_required_option_is_named():
    with pytest.raises(ValueError, match=r"IGPG.sample needs like="):
        IGPG(preset="tiny").sample(2, dataset="digits")
    with pytest.raises(ValueError, match=r"IGPG.sample_to_files needs like="):
        IGPG(preset="tiny").sample_to_files(["x.safetensors"])


def test_return_tokens_is_for_sample_only(tmp_path):
    with pytest.raises(TypeError, match=r"only sample\(\) takes return_tokens"):
        RPG(config=RPGConfig(**TINY_RPG)).sample_to_files([tmp_path / "a.safetensors"],
                                                          return_tokens=True)


@pytest.mark.parametrize("bad", [2.0, 2.5, True, "2", None])
def test_n_must_be_a_positive_int(bad):
    for make, _ in METHODS.values():
        with pytest.raises(TypeError, match="n must be a positive int"):
            make().sample(bad)
    with pytest.raises(ValueError, match="n must be a positive int"):
        RPG(config=RPGConfig(**TINY_RPG)).sample(0)


def test_seed_and_steps_are_ints():
    gen = RPG(config=RPGConfig(**TINY_RPG))
    with pytest.raises(TypeError, match="seed must be an int"):
        gen.sample(1, seed=1.5)
    with pytest.raises(TypeError, match="steps must be a positive int"):
        gen.fit(pg.CheckpointSet.from_state_dicts(sds()), steps=2.5, progress=False)
    with pytest.raises(TypeError, match="seed must be an int"):
        gen.fit(pg.CheckpointSet.from_state_dicts(sds()), seed="0", progress=False)


def test_fit_takes_one_collection_or_a_list():
    one = pg.CheckpointSet.from_state_dicts(sds())
    with pytest.raises(ValueError, match=r"one collection; got a list of 2 .*igpg"):
        RPG(config=RPGConfig(**TINY_RPG)).fit([one, one], progress=False)
    with pytest.raises(ValueError, match="empty list"):
        RPG(config=RPGConfig(**TINY_RPG)).fit([], progress=False)
    # a list holding the one collection, and a plain list of state dicts, are one collection
    gen = RPG(config=RPGConfig(**TINY_RPG)).fit([one], steps=2, progress=False)
    assert gen.sample(n=2, seed=0)[0]["w"].shape == (5, 7)
    gen = RPG(config=RPGConfig(**TINY_RPG)).fit(sds(), steps=2, progress=False)
    assert len(gen.sample(1)) == 1


def test_a_registered_method_is_listed_and_its_options_reach_the_cli(dummy_method, capsys):
    name, cls = dummy_method
    assert name in method_names() and get_method(name) is cls
    assert method_options(name) is cls.options
    train = build_parser("train")
    args = train.parse_args(["train", "--ckpts", "c", "--out", "o", "--method", name])
    assert args.method == name
    sample = build_parser("sample")
    args = sample.parse_args(["sample", "--gen", "g", "--out", "o", "--colour", "blue",
                              "--tint-level", "3"])
    assert args.colour == "blue" and args.tint_level == 3
    with pytest.raises(SystemExit):
        sample.parse_args(["sample", "--gen", "g", "--out", "o", "--colour", "green"])
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["sample", "--help"])
    shown = " ".join(capsys.readouterr().out.split())  # help text wraps lines
    assert "--colour {red,blue}" in shown and "a colour (test-dummy)" in shown, shown
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "test-dummy: a method of the tests" in " ".join(capsys.readouterr().out.split())


def test_a_method_must_declare_its_options():
    with pytest.raises(TypeError, match="declares no options"):
        @register_method("test-undeclared")
        class Undeclared:
            pass
    assert "test-undeclared" not in method_names()
    with pytest.raises(ValueError, match="keyword of the generator contract"):
        MethodOptions(sample={"seed": Option("a second seed")})


def test_train_flags_follow_the_method_declaration(tmp_path, capsys):
    folder = tmp_path / "c"
    pg.CheckpointSet.from_state_dicts(sds()).save(folder)
    two = ["--ckpts", str(folder), "--ckpts", str(folder)]
    assert main(["train", "--method", "pdiff", *two, "--out", str(tmp_path / "g")]) == 2
    assert "--method pdiff trains on one collection" in capsys.readouterr().err
    assert main(["train", "--method", "pdiff", "--ckpts", str(folder), "--condition-from",
                 "manifest", "--out", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err
    assert "does not learn from task conditions" in err and "rpg" in err, err
    # IGPG's train path checks --out before any work, as every method's does
    (tmp_path / "file").write_text("x")
    assert main(["train", "--method", "igpg", *two, "--out", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_sample_options_are_checked_in_command_line_words(tmp_path, capsys):
    gen = RPG(config=RPGConfig(**TINY_RPG)).fit(pg.CheckpointSet.from_state_dicts(sds()),
                                                steps=2, progress=False)
    gen.save_pretrained(tmp_path / "g")
    out = tmp_path / "s"
    assert main(["sample", "--gen", str(tmp_path / "g"), "--out", str(out), "-n", "1",
                 "--dataset", "digits"]) == 2
    err = capsys.readouterr().err
    assert "--dataset: not an option" in err and "--mode" in err and "dataset=" not in err, err
    assert not out.exists()
    assert main(["sample", "--gen", str(tmp_path / "g"), "--out", str(out), "-n", "2",
                 "--mode", "sequential", "--steps", "3"]) == 0
    assert len(list(out.glob("*.safetensors"))) == 2
    assert main(["sample", "--gen", str(tmp_path / "g"), "--out", str(out), "--steps", "0"]) == 2
    assert "--steps must be at least 1" in capsys.readouterr().err


def test_generate_needs_a_method_that_takes_a_condition(tmp_path, capsys):
    gen = RPG(config=RPGConfig(**TINY_RPG)).fit(pg.CheckpointSet.from_state_dicts(sds()),
                                                steps=2, progress=False)
    gen.save_pretrained(tmp_path / "g")
    import json

    cfg = json.loads((tmp_path / "g" / "config.json").read_text())
    cfg["method"] = "igpg"  # only the method name matters to this check
    (tmp_path / "g" / "config.json").write_text(json.dumps(cfg))
    assert main(["generate", "--gen", str(tmp_path / "g"), "--task", "0101010101",
                 "--classes", "digits", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "takes no task condition" in err and "like" in err, err
