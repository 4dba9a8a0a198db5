"""RPG's settings: preset, size rule and overrides decided in one function, the config built
once on the way from ``RPG(...)`` through ``fit`` (methods/rpg/choice.py)."""

import pytest
import torch

from paramgen import CheckpointSet
from paramgen.methods import RPG, RPGConfig
from paramgen.methods.rpg.choice import CollectionFacts, choose_config
from paramgen.methods.rpg.presets import RPG_PRESETS, size_settings

SMALL = dict(token_size=16, d_model=(8, 8), d_state=2, denoiser_channels=(1, 4))


def collection(rows=5, cols=7, n=2, conditions=None):
    g = torch.Generator().manual_seed(0)
    return CheckpointSet.from_state_dicts(
        [{"w": torch.randn(rows, cols, generator=g), "steps": torch.tensor(3)}
         for _ in range(n)], conditions=conditions)


@pytest.fixture
def builds(monkeypatch):
    """How many RPGConfig objects get built (every way of building one runs __post_init__)."""
    count = [0]
    original = RPGConfig.__post_init__

    def counted(self):
        count[0] += 1
        original(self)

    monkeypatch.setattr(RPGConfig, "__post_init__", counted)
    return count


@pytest.mark.parametrize("how", ["auto", "preset", "config", "dict"])
def test_a_fit_builds_its_config_once(builds, how):
    wide = collection(rows=260, cols=256)  # above the size rule's first row: a window
    given = {"auto": dict(SMALL), "preset": dict(SMALL, preset="cpu"),
             "dict": dict(SMALL, config={"steps": 4})}.get(how)
    if how == "config":
        cfg = RPGConfig(**SMALL)
        builds[0] = 0
        given = dict(config=cfg, lr=1e-3)
    gen = RPG(**given)
    gen.fit(wide, steps=1, progress=False)
    assert builds[0] == 1, how
    assert (gen.config.train_window == 32) == (how == "auto")  # the size rule only for RPG()


def test_rpg_with_neither_preset_nor_config_takes_its_settings_from_the_collection():
    gen = RPG(**SMALL, lr=2e-3)
    # before any collection: preset cpu plus the overrides
    assert gen.preset == "cpu" and gen.config.lr == 2e-3 and gen.config.train_window == 0
    gen.fit(collection(conditions=[[0.0, 1.0], [1.0, 0.0]]), steps=1, progress=False)
    assert gen.preset == "cpu-tasks" and gen.config.batch_size == 32 and gen.auto_settings == {}
    gen.fit(collection(rows=260, cols=256), steps=1, progress=False)  # a second fit chooses again
    assert gen.preset == "cpu" and gen.config.train_window == 32
    assert gen.auto_settings == size_settings(260 * 256, 16)
    assert gen.config.lr == 2e-3  # overrides win over preset and size rule


def test_choose_config_reads_preset_config_overrides_and_facts():
    big = CollectionFacts(conditioned=False, generated_values=1_000_000)
    # given preset or config: the collection does not matter
    chosen = choose_config("tiny", None, {"lr": 1.0}, big)
    assert chosen.preset == "tiny" and chosen.config.lr == 1.0 and chosen.size_settings == {}
    assert chosen.config.token_size == RPG_PRESETS["tiny"]["token_size"]
    chosen = choose_config(None, {"steps": 7}, {"lr": 1.0}, big)
    assert chosen.preset is None and (chosen.config.steps, chosen.config.lr) == (7, 1.0)
    # RPG(): the size rule counts tokens of the token size that will be used (the override's)
    chosen = choose_config(None, None, {"token_size": 1024}, big)
    assert chosen.size_settings == size_settings(1_000_000, 1024) != size_settings(1_000_000)
    assert chosen.config.steps == chosen.size_settings["steps"]
    assert choose_config(None, None, {}, CollectionFacts(True, 10)).preset == "cpu-tasks"
    with pytest.raises(ValueError, match="either preset= or config="):
        choose_config("cpu", {"steps": 7}, {}, None)


def test_bad_overrides_are_refused_with_their_name():
    with pytest.raises(ValueError, match=r"unknown RPG config keys \['stepz'\]"):
        RPG(stepz=5)  # at once, before any collection is read
    with pytest.raises(ValueError, match="lr"):
        RPG(**SMALL, lr=-1.0).fit(collection(), steps=1, progress=False)
    with pytest.raises(ValueError, match="lr"):
        RPG(preset="cpu", lr=-1.0)


def test_paramgen_train_builds_the_config_once(builds, tmp_path, capsys):
    from paramgen.cli import main

    collection(rows=260, cols=256).save(tmp_path / "ck")
    builds[0] = 0
    assert main(["train", "--ckpts", str(tmp_path / "ck"), "--out", str(tmp_path / "g"),
                 "--steps", "1", "--quiet", "--set", "token_size=16", "--set", "d_model=8",
                 "--set", "d_state=2", "--set", "denoiser_channels=[1, 4]"]) == 0
    assert builds[0] == 1
    assert "window 32 tokens" in capsys.readouterr().out  # the size rule's choice, printed
