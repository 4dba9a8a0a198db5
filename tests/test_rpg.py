"""RPG generator: API contract, files, conditions, resume, determinism (tiny sizes, seconds)."""

import json
import warnings

import pytest
import torch

from paramgen import CheckpointSet
from paramgen.methods import RPG, RPGConfig, load_generator

TINY = dict(token_size=16, d_model=(32, 32), d_state=4, denoiser_channels=(1, 8, 16),
            num_train_timesteps=50, batch_size=4, diffusion_batch=32, lr=1e-3, steps=5,
            sampler="ddim", sampling_steps=5, save_every=3, partial_batch=7)


def make_sds(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = {"fc.weight": torch.randn(5, 7, generator=g), "fc.bias": torch.randn(5, generator=g),
            "bn.running_var": torch.rand(5, generator=g) + 0.5,
            "bn.num_batches_tracked": torch.tensor(9),
            "half": torch.randn(3, 3, generator=g).to(torch.float16)}
    sds = []
    for _ in range(n):
        sd = {k: (v + 0.01 * torch.randn(v.shape, generator=g).to(v.dtype)
                  if v.is_floating_point() else v.clone()) for k, v in base.items()}
        sd["bn.running_var"] = sd["bn.running_var"].abs()
        sds.append(sd)
    return sds


@pytest.fixture(scope="module")
def fitted():
    ckpts = CheckpointSet.from_state_dicts(make_sds())
    return RPG(config=RPGConfig(**TINY), backbone="lstm").fit(ckpts, progress=False), ckpts


def test_samples_have_exact_keys_shapes_dtypes(fitted):
    gen, ckpts = fitted
    for mode in ("sequential", "partial", "full"):
        out = gen.sample(3, mode=mode, seed=1)
        assert len(out) == 3
        for sd in out:
            assert list(sd) == list(ckpts[0])
            for k, v in sd.items():
                assert v.shape == ckpts[0][k].shape and v.dtype == ckpts[0][k].dtype, k
                assert torch.isfinite(v.float()).all()
            assert torch.equal(sd["bn.num_batches_tracked"], torch.tensor(9))
            assert (sd["bn.running_var"] > 0).all()


def test_sampling_is_seeded(fitted):
    gen, _ = fitted
    a, b, c = gen.sample(2, seed=3), gen.sample(2, seed=3), gen.sample(2, seed=4)
    assert all(torch.equal(x["fc.weight"], y["fc.weight"]) for x, y in zip(a, b))
    assert not torch.equal(a[0]["fc.weight"], c[0]["fc.weight"])


def test_ddpm_sampler_and_state_choice(fitted):
    gen, _ = fitted
    out = gen.sample(1, sampler="ddpm", state=2)
    assert out[0]["fc.weight"].shape == (5, 7)
    with pytest.raises(ValueError, match="permutation state"):
        gen.sample(1, state=99)
    with pytest.raises(ValueError, match="mode"):
        gen.sample(1, mode="fast")
    with pytest.raises(ValueError, match="steps"):
        gen.sample(1, sampler="ddpm", steps=10)


def test_condition_given_to_unconditioned_generator_is_an_error(fitted):
    gen, _ = fitted
    with pytest.raises(ValueError, match="without conditions"):
        gen.sample(1, condition=[1.0, 0.0])


def test_save_and_load_give_identical_samples(fitted, tmp_path):
    gen, _ = fitted
    gen.save_pretrained(tmp_path / "g")
    cfg = json.loads((tmp_path / "g" / "config.json").read_text())
    assert cfg["method"] == "rpg" and cfg["config"]["token_size"] == 16
    assert (tmp_path / "g" / "model.safetensors").is_file()
    again = RPG.from_pretrained(tmp_path / "g")
    also = load_generator(tmp_path / "g")
    a, b, c = gen.sample(2, seed=5), again.sample(2, seed=5), also.sample(2, seed=5)
    for x, y, z in zip(a, b, c):
        for k in x:
            assert torch.equal(x[k], y[k]) and torch.equal(x[k], z[k]), k


def test_conditioned_generator_validates_condition_size():
    sds = make_sds(4)
    conds = [[1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 1]]
    ckpts = CheckpointSet.from_state_dicts(sds, conditions=conds)
    gen = RPG(config=RPGConfig(**TINY), backbone="lstm").fit(ckpts, progress=False)
    assert len(gen.sample(2, condition=[1, 0, 0])) == 2
    assert len(gen.sample(1, condition="101")) == 1
    with pytest.raises(ValueError, match="size 3"):
        gen.sample(1, condition=[1, 0])
    with pytest.raises(ValueError, match="trained with conditions"):
        gen.sample(1)


def test_fit_is_deterministic_and_resumes_from_its_last_save(tmp_path):
    ckpts = CheckpointSet.from_state_dicts(make_sds())
    cfg = RPGConfig(**dict(TINY, steps=7))
    full = RPG(config=cfg, backbone="lstm").fit(ckpts, progress=False, seed=1)
    again = RPG(config=cfg, backbone="lstm").fit(ckpts, progress=False, seed=1)
    ref = full.network.state_dict()
    assert all(torch.equal(v, again.network.state_dict()[k]) for k, v in ref.items())

    class Stop(Exception):
        pass

    def interrupt(step, loss):
        if step == 4:
            raise Stop

    with pytest.raises(Stop):
        RPG(config=cfg, backbone="lstm").fit(ckpts, progress=False, seed=1,
                                             workdir=tmp_path, callback=interrupt)
    from paramgen import train_state

    saved = train_state.load(tmp_path)
    assert saved["step"] == 3  # save_every=3
    assert not (tmp_path / "train_state.pt").exists()  # no pickle anywhere
    resumed = RPG(config=cfg, backbone="lstm").fit(ckpts, progress=False, seed=1,
                                                   workdir=tmp_path)
    for k, v in ref.items():
        assert torch.allclose(v, resumed.network.state_dict()[k], atol=1e-6), k


def test_resume_refuses_other_data(tmp_path):
    cfg = RPGConfig(**TINY)
    RPG(config=cfg, backbone="lstm").fit(CheckpointSet.from_state_dicts(make_sds()),
                                         progress=False, workdir=tmp_path)
    with pytest.raises(ValueError, match="other data"):
        RPG(config=cfg, backbone="lstm").fit(CheckpointSet.from_state_dicts(make_sds(seed=1)),
                                             progress=False, workdir=tmp_path)


ABLATIONS = {
    # each setting, and what it must visibly change in the fitted generator
    "backbone=none": (dict(backbone="none"),
                      lambda g: type(g.network.backbone).__name__ == "TokenMLPBackbone"),
    "backbone=transformer": (dict(backbone="transformer"),
                             lambda g: "Transformer" in type(g.network.backbone).__name__),
    "backbone=mamba": (dict(backbone="mamba"),
                       lambda g: "Mamba" in type(g.network.backbone).__name__),
    "position=1d": (dict(position_embedding="1d"), lambda g: g.network.position.kind == "1d"),
    "position=learnable": (dict(position_embedding="learnable"),
                           lambda g: any(True for _ in g.network.position.parameters())),
    "tokenization=flat": (dict(tokenization="flat"), lambda g: g.tokenizer.num_layers == 1
                          or g.tokenizer.mode == "flat"),
    "tokenization=channel": (dict(tokenization="channel"),
                             lambda g: g.tokenizer.num_tokens > 3),  # 5 rows of fc.weight alone
    "states=none": (dict(permutation_state="none"), lambda g: g.network.states is None),
    "state_positions": (dict(position_embedding="learnable", state_positions=True,
                             permutation_state="run"),
                        lambda g: tuple(g.network.state_positions.shape[:2])
                        == (2, g.tokenizer.num_tokens)),
    "states=run": (dict(permutation_state="run"), lambda g: g._num_states == 2),
    "prototype_means": (dict(prototype_means=True),
                        lambda g: g.network.token_means.abs().sum() > 0),
    "states=checkpoint": (dict(permutation_state="checkpoint"), lambda g: g._num_states == 4),
    "prediction=sample": (dict(prediction="sample"), lambda g: g.config.prediction == "sample"),
    "token_size=5": (dict(token_size=5), lambda g: g.tokenizer.token_size == 5),
}


@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_ablations_are_configuration(name):
    override, check = ABLATIONS[name]
    ckpts = CheckpointSet.from_state_dicts(make_sds(4), runs=[0, 0, 1, 1])
    gen = RPG(config=RPGConfig(**dict(TINY, steps=2, **override)))
    gen.fit(ckpts, progress=False)
    assert check(gen), name
    out = gen.sample(1)
    assert all(torch.isfinite(v.float()).all() for v in out[0].values())


def test_presets_and_bad_config():
    assert RPGConfig.from_preset("tiny").token_size == 256
    assert RPGConfig.from_preset("large").d_model == (12288, 16384)
    with pytest.raises(ValueError, match="unknown RPG preset"):
        RPG(preset="huge")
    with pytest.raises(ValueError, match="backbone"):
        RPG(config=RPGConfig(**TINY), backbone="gru").fit(
            CheckpointSet.from_state_dicts(make_sds(2)), progress=False)
    with pytest.raises(ValueError, match="sampling_mode"):
        RPGConfig(sampling_mode="fast")
    with pytest.raises(ValueError, match="empty"):
        RPG(config=RPGConfig(**TINY)).fit([], progress=False)


@pytest.mark.parametrize("mode", ["sequential", "partial", "full"])
def test_sample_to_files_streams_what_sample_returns(fitted, tmp_path, mode):
    from safetensors.torch import load_file

    gen, ckpts = fitted
    paths = gen.sample_to_files([tmp_path / "a.safetensors", tmp_path / "b.safetensors"],
                                seed=5, mode=mode)
    want = gen.sample(2, seed=5, mode=mode)
    for path, sd in zip(paths, want):
        got = load_file(str(path))
        assert sorted(got) == sorted(ckpts[0])
        assert all(torch.equal(got[k], sd[k]) for k in sd)


@pytest.mark.parametrize("backbone", ["mamba", "transformer"])
def test_block_streamed_prototypes_match_one_pass(backbone):
    # Partial and sequential modes run the backbone a block at a time with a carried state;
    # with the denoiser zeroed, the prototype skip makes every token its prototype, so the
    # tokens must equal the prototypes of one pass over the whole sequence.
    ckpts = CheckpointSet.from_state_dicts(make_sds())
    gen = RPG(config=RPGConfig(**TINY), backbone=backbone, prediction="sample",
              prototype_skip=True).fit(ckpts, steps=2, progress=False)
    with torch.no_grad():
        for p in gen.network.denoiser.parameters():
            p.zero_()
    protos = gen.prototypes(2, seed=4)
    for mode in ("sequential", "partial", "full"):
        tokens = gen.sample(2, seed=4, mode=mode, return_tokens=True)
        torch.testing.assert_close(tokens, protos, atol=1e-5, rtol=1e-5)


def test_a_condition_takes_the_state_of_the_run_trained_nearest_to_it(tmp_path):
    # A task grid whose task models are independent runs: one state per task. Sampling a task
    # uses that task's state; an unseen task the state of the nearest seen one (among ties, one
    # of the tied); runs that all saw every condition are drawn among all, as before.
    conds = [[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1]]
    grid = CheckpointSet.from_state_dicts(make_sds(6), conditions=conds, runs=[0, 0, 1, 1, 2, 2])
    gen = RPG(config=RPGConfig(**TINY), backbone="lstm").fit(grid, progress=False)

    def same(cond, state, n=5):
        return torch.equal(gen.prototypes(n, cond, seed=3), gen.prototypes(n, cond, state=state))

    assert same([0, 1, 0], 1) and same([0, 0, 1], 2) and same([0.9, 0.2, 0.0], 0)
    tied = [gen.prototypes(1, [0, 1, 1], seed=s) for s in range(12)]
    by_state = [gen.prototypes(1, [0, 1, 1], state=k) for k in range(3)]
    picked = {next(k for k in range(3) if torch.equal(p, by_state[k])) for p in tied}
    assert picked == {1, 2}
    gen.save_pretrained(tmp_path / "g")
    again = RPG.from_pretrained(tmp_path / "g")
    assert torch.equal(again.prototypes(4, [0.1, 0.0, 0.9], seed=1),
                       gen.prototypes(4, [0.1, 0.0, 0.9], state=2))

    shared = CheckpointSet.from_state_dicts(make_sds(6), conditions=conds[::2] * 2,
                                            runs=[0, 0, 0, 1, 1, 1])
    gen = RPG(config=RPGConfig(**TINY), backbone="lstm").fit(shared, progress=False)
    drawn = torch.randint(0, 2, (6,), generator=torch.Generator().manual_seed(5))
    assert torch.equal(gen.prototypes(6, [0, 1, 0], seed=5),
                       gen.prototypes(6, [0, 1, 0], state=drawn.tolist()))


GRID_CONDITIONS = [[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1]]


def independent_task_models(g: torch.Generator) -> tuple[list[dict], list[dict]]:
    """Three tasks (GRID_CONDITIONS), two models each, every task from its own initialisation:
    (the three initialisations, the six models)."""
    inits = [{"fc.weight": torch.randn(5, 7, generator=g), "fc.bias": torch.randn(5, generator=g)}
             for _ in range(3)]
    cold = [{k: v + 0.01 * torch.randn(v.shape, generator=g) for k, v in inits[i // 2].items()}
            for i in range(6)]
    return inits, cold


def test_a_one_run_grid_of_independent_task_models_gets_a_state_per_task(capsys, tmp_path):
    # No architecture needed: task models from independent initialisations lie ~sqrt(2) of
    # their norm apart, fine-tunes of one model close together (paramgen.align.auto).
    g = torch.Generator().manual_seed(0)
    conds = GRID_CONDITIONS
    inits, cold = independent_task_models(g)
    grid = CheckpointSet.from_state_dicts(cold, conditions=conds)
    gen = RPG(config=RPGConfig(**TINY), backbone="lstm").fit(grid, progress=True)
    assert gen._num_states == 3 and gen._state_runs == [0, 1, 2]
    assert "one permutation state per task (3)" in capsys.readouterr().out
    assert torch.equal(gen.prototypes(2, [0, 1, 0], seed=1), gen.prototypes(2, [0, 1, 0], state=1))
    # An unseen task: the nearest seen task's state and condition, and a warning that says so.
    with pytest.warns(UserWarning, match=r"condition \[0.9, 0.2, 0\] is not one of the "
                                         r"training tasks.*nearest seen task's model \(100\)"):
        unseen = gen.prototypes(2, [0.9, 0.2, 0.0], seed=1)
    assert torch.equal(unseen, gen.prototypes(2, [1, 0, 0], state=0))
    with pytest.warns(UserWarning, match="nearest seen task") as record:
        assert len(gen.sample(1, condition=[1, 1, 0])) == 1  # a tie: one of the nearest
    assert record[0].filename == __file__  # the warning points at the caller's line
    from paramgen.notices import ParamgenWarning
    assert record[0].category is ParamgenWarning
    gen.save_pretrained(tmp_path / "g")
    again = RPG.from_pretrained(tmp_path / "g")
    with pytest.warns(UserWarning, match="nearest seen task"):
        assert torch.equal(again.prototypes(2, [0.9, 0.2, 0.0], seed=1), unseen)
    gen.config.unseen_task = "given"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        given = gen.prototypes(2, [0.9, 0.2, 0.0], seed=1)
    assert torch.equal(given, gen.prototypes(2, [0.9, 0.2, 0.0], state=0))
    assert not torch.equal(given, unseen)
    warm = [{k: v + 0.05 * torch.randn(v.shape, generator=g) for k, v in inits[0].items()}
            for _ in range(6)]
    gen = RPG(config=RPGConfig(**TINY), backbone="lstm").fit(
        CheckpointSet.from_state_dicts(warm, conditions=conds), progress=True)
    assert gen._num_states == 1 and "per task" not in capsys.readouterr().out
    with warnings.catch_warnings():  # one basin: an unseen task takes its own condition
        warnings.simplefilter("error")
        gen.prototypes(1, [1, 1, 0])
    # Adapters from one shared initial adapter: LoRA's B starts at zero, so two tasks' B differ
    # as much as independent draws would, but A still carries the shared start.
    lora = [{"a": inits[0]["fc.weight"] + 0.01 * torch.randn(5, 7, generator=g),
             "b": 2 * torch.randn(7, 5, generator=g)} for _ in range(6)]
    gen = RPG(config=RPGConfig(**TINY), backbone="lstm").fit(
        CheckpointSet.from_state_dicts(lora, conditions=conds), progress=False)
    assert gen._num_states == 1
    # An explicit choice is kept.
    gen = RPG(config=RPGConfig(**TINY), backbone="lstm", permutation_state="run").fit(
        grid, progress=False)
    assert gen._num_states == 1


def test_cli_says_an_unseen_task_of_a_cold_grid_is_its_nearest_seen_task(tmp_path, capsys):
    from paramgen.cli import main

    g = torch.Generator().manual_seed(1)
    inits = [{"fc.weight": torch.randn(5, 7, generator=g)} for _ in range(2)]
    grid = CheckpointSet.from_state_dicts([inits[i // 2] for i in range(4)],
                                          conditions=[[1, 0], [1, 0], [0, 1], [0, 1]])
    RPG(config=RPGConfig(**TINY), backbone="lstm").fit(grid, progress=False) \
        .save_pretrained(tmp_path / "g")
    assert main(["sample", "--gen", str(tmp_path / "g"), "-n", "1", "--out",
                 str(tmp_path / "s"), "--condition", "11"]) == 0
    err = capsys.readouterr().err
    assert "paramgen sample: warning: condition 11 is not one of the training tasks" in err
    assert "generator.py" not in err  # one line of the command, not a source location


def test_default_preset_follows_the_collection():
    plain = CheckpointSet.from_state_dicts(make_sds(4))
    gen = RPG(token_size=16, d_model=(32, 32), d_state=4, denoiser_channels=(1, 8, 16))
    gen.fit(plain, steps=1, progress=False)
    assert gen.preset == "cpu" and gen.config.batch_size == 16 and gen.config.token_size == 16
    bits = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    tasks = CheckpointSet.from_state_dicts(make_sds(4), conditions=bits)
    gen = RPG(token_size=16, d_model=(32, 32), d_state=4, denoiser_channels=(1, 8, 16))
    gen.fit(tasks, steps=1, progress=False)
    assert gen.preset == "cpu-tasks" and gen.config.batch_size == 32
    assert gen.config.token_size == 16  # overrides still apply
    # An explicit preset is kept whatever the data.
    gen = RPG(preset="cpu", token_size=16, d_model=(32, 32), d_state=4,
              denoiser_channels=(1, 8, 16)).fit(tasks, steps=1, progress=False)
    assert gen.preset == "cpu" and gen.config.batch_size == 16


def test_size_rule_scales_steps_with_tokens_and_learns_positions():
    from paramgen.methods.rpg.presets import MIN_WINDOWED_STEPS, VISITS_PER_TOKEN, size_settings

    assert size_settings(10_000) == {}
    mid, big = size_settings(1_070_000), size_settings(10_000_000)
    assert mid["train_window"] and mid["position_embedding"] == "learnable"
    assert mid["position_lr_scale"] > 1
    # every token is in the batch about VISITS_PER_TOKEN times, whatever the size
    for values, rule in ((1_070_000, mid), (10_000_000, big)):
        tokens = -(-values // rule.get("token_size", 256))
        visits = rule["steps"] * rule["diffusion_batch"] / tokens
        assert VISITS_PER_TOKEN <= visits < VISITS_PER_TOKEN * 1.2
    assert size_settings(60_000)["steps"] == MIN_WINDOWED_STEPS
    # above 4M values: tokens of 1,024 and a shallower denoiser; the user's token size still counts
    assert "token_size" not in mid and big["token_size"] == 1024
    assert len(big["denoiser_channels"]) < len(mid["denoiser_channels"])
    assert size_settings(10_000_000, token_size=4096)["steps"] < big["steps"]
    # larger tokens: fewer of them, fewer steps
    assert size_settings(1_070_000, token_size=1024)["steps"] < mid["steps"]
    # bf16 autocast only where the CPU computes bf16 in hardware
    assert size_settings(1_070_000, native_bf16=True)["autocast"] == "bf16"
    assert "autocast" not in size_settings(1_070_000, native_bf16=False)
    assert "autocast" not in size_settings(10_000, native_bf16=True)
    # RPG() applies the rule for the collection's size, and overrides still win
    wide = CheckpointSet.from_state_dicts(
        [{"w": torch.randn(260, 256, generator=torch.Generator().manual_seed(i))}
         for i in range(2)])
    gen = RPG(token_size=16, d_model=(8, 8), d_state=2, denoiser_channels=(1, 4),
              position_lr_scale=7.0)
    gen.fit(wide, steps=1, progress=False)
    assert gen.config.train_window == 32 and gen.config.position_embedding == "learnable"
    assert gen.config.position_lr_scale == 7.0 and gen.config.steps == size_settings(
        260 * 256, 16)["steps"]
    assert "positions learnable (lr x7, rows per run if 2-16 runs)" in gen.settings_summary()
    assert gen.config.state_positions and gen.network.state_positions is None  # one run


def test_position_lr_scale_speeds_up_only_the_position_table():
    plain = CheckpointSet.from_state_dicts(make_sds(3))
    moved = {}
    for scale in (1.0, 100.0):
        torch.manual_seed(0)
        gen = RPG(**{**TINY, "position_embedding": "learnable", "position_lr_scale": scale,
                     "lr": 1e-4, "min_lr_ratio": 1.0, "weight_decay": 0.0})
        gen.fit(plain, steps=1, progress=False)
        start = sinusoidal_2d_table(gen)
        moved[scale] = (gen.network.position.table.detach() - start).abs().max().item()
    # AdamW's first step moves a parameter by about lr x scale whatever its gradient
    assert moved[1.0] == pytest.approx(1e-4, rel=0.05)
    assert moved[100.0] == pytest.approx(1e-2, rel=0.05)


def test_state_positions_learn_a_row_per_run_windowed_and_sample_the_same_after_loading(tmp_path):
    ckpts = CheckpointSet.from_state_dicts(make_sds(4), runs=[0, 0, 1, 1])
    gen = RPG(**{**TINY, "position_embedding": "learnable", "state_positions": True,
                 "train_window": 2, "diffusion_batch": 4})
    gen.fit(ckpts, steps=3, progress=False)
    rows = gen.network.state_positions.detach()
    assert rows.abs().sum() > 0  # trained from zeros, in windows
    gen.save_pretrained(tmp_path / "g")
    again = load_generator(tmp_path / "g")
    for mode in ("sequential", "full"):
        a = gen.sample(2, seed=3, mode=mode)
        b = again.sample(2, seed=3, mode=mode)
        assert all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in x)
    # states that are checkpoints of one run, positions that are not learned, or more runs than
    # MAX_STATE_POSITION_RUNS: no such rows
    learnable = {"position_embedding": "learnable"}
    for kw, runs in ((learnable, [0, 0, 0]), ({}, [0, 1, 1]), (learnable, list(range(17)))):
        other = RPG(**{**TINY, "state_positions": True, **kw})
        other.fit(CheckpointSet.from_state_dicts(make_sds(len(runs)), runs=runs), steps=1,
                  progress=False)
        assert other._num_states > 1 and other.network.state_positions is None


def test_prototype_means_hold_each_runs_mean_token_and_travel_with_the_generator(tmp_path):
    sds = make_sds(4)
    ckpts = CheckpointSet.from_state_dicts(sds, runs=[0, 0, 1, 1])
    gen = RPG(**{**TINY, "position_embedding": "learnable", "state_positions": True,
                 "prototype_means": True, "train_window": 2, "diffusion_batch": 4})
    gen.fit(ckpts, steps=2, progress=False)
    tokens = torch.stack([gen.tokenizer.tokenize(sd) for sd in sds])
    means = gen.network.token_means
    assert means.shape == (2, *tokens.shape[1:])  # a row per run, as state_positions
    assert torch.allclose(means[0], tokens[:2].mean(0), atol=1e-6)
    assert torch.allclose(means[1], tokens[2:].mean(0), atol=1e-6)
    assert not any(True for n, _ in gen.network.named_parameters() if "token_means" in n)
    assert "+ token means" in gen.settings_summary()
    # the prototypes are the backbone's output plus the run's means
    net, states = gen.network, torch.tensor([0, 1])
    with torch.no_grad():
        raw = net.backbone(net.backbone_input(states, None, 2))
        assert torch.allclose(net.prototypes(states, None, 2) - raw, means, atol=1e-5)
    gen.save_pretrained(tmp_path / "g")
    again = load_generator(tmp_path / "g")
    assert torch.equal(again.network.token_means, means)
    for mode in ("sequential", "full"):
        a, b = gen.sample(2, seed=3, mode=mode), again.sample(2, seed=3, mode=mode)
        assert all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in x)
    # one run (or no per-run rows): one mean over the whole collection
    one = RPG(**{**TINY, "prototype_means": True}).fit(
        CheckpointSet.from_state_dicts(sds), steps=1, progress=False)
    assert torch.allclose(one.network.token_means[0], tokens.mean(0), atol=1e-6)


def sinusoidal_2d_table(gen):
    from paramgen.embeddings import sinusoidal_2d

    return sinusoidal_2d(gen.tokenizer.positions, gen.config.d_model[0])


def test_fit_prints_the_chosen_settings_before_training(capsys):
    plain = CheckpointSet.from_state_dicts(make_sds(3))
    RPG(**TINY).fit(plain, steps=1, progress=True)
    out = capsys.readouterr().out
    assert "RPG settings (" in out and "token 16" in out and "1 steps" in out
    RPG(**TINY).fit(plain, steps=1, progress=False)
    assert "RPG settings" not in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["2d", "1d", "learnable"])
def test_position_rows_match_the_table_and_follow_the_device(kind):
    from paramgen.embeddings import PositionEmbedding

    positions = torch.tensor([[0, 0], [0, 1], [1, 0], [2, 0], [2, 1], [2, 2]])
    emb = PositionEmbedding(positions, 10, kind)
    table = emb()
    assert table.shape == (6, 10)
    for start, end in ((0, 6), (1, 4), (5, 6)):
        torch.testing.assert_close(emb.rows(start, end), table[start:end])
    if kind != "learnable":
        # Rows are computed where the positions live (the model's device when sampling).
        emb.to("meta")
        assert emb.rows(1, 3).device.type == "meta"


def test_value_normalization_and_condition_noise_train_save_and_sample(tmp_path):
    """normalization="value" keeps the collection's mean model with the generator (a saved one
    samples the same); condition_noise changes the fit, seeded; a negative one is refused."""
    sds = make_sds(4)
    conds = [[1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 1]]
    ckpts = CheckpointSet.from_state_dicts(sds, conditions=conds)

    def fit(**kw):
        return RPG(config=RPGConfig(**TINY, **kw),
                   backbone="lstm").fit(ckpts, progress=False)

    value = fit(normalization="value")
    assert set(value.tokenizer.offsets) == {"fc.weight", "fc.bias", "bn.running_var", "half"}
    value.save_pretrained(tmp_path / "g")
    again = load_generator(tmp_path / "g")
    a, b = value.sample(1, condition="101", seed=1)[0], again.sample(1, condition="101", seed=1)[0]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a few steps from scratch: the offsets put the samples near the collection already
    assert (a["fc.weight"] - sds[0]["fc.weight"]).abs().mean() < 0.5
    plain, noisy = fit().network.state_dict(), fit(condition_noise=0.5).network.state_dict()
    assert not all(torch.equal(plain[k], noisy[k]) for k in plain)
    assert all(torch.equal(noisy[k], v) for k, v in
               fit(condition_noise=0.5).network.state_dict().items())
    with pytest.raises(ValueError, match="condition_noise"):
        RPGConfig(**TINY, condition_noise=-1.0)


@pytest.mark.parametrize("backbone", ["lstm", "transformer"])
def test_classifier_free_guidance_trains_a_null_condition_and_steers_sampling(tmp_path, backbone):
    """condition_dropout zeroes a share of the training conditions (the null condition);
    guidance 1 is plain sampling, another weight changes the samples (seeded, finite, saved and
    loaded alike); guidance is refused without conditions or without dropout."""
    sds = make_sds(4)
    ckpts = CheckpointSet.from_state_dicts(sds, conditions=[[1, 0, 1], [0, 1, 1], [1, 1, 0],
                                                            [0, 0, 1]])

    def fit(**kw):
        return RPG(config=RPGConfig(**TINY, **kw), backbone=backbone).fit(ckpts, progress=False)

    gen = fit(condition_dropout=0.5)
    assert not all(torch.equal(a, b) for a, b in zip(gen.network.state_dict().values(),
                                                     fit().network.state_dict().values()))
    plain = gen.sample(2, condition="101", seed=3)
    same = gen.sample(2, condition="101", seed=3, guidance=1.0)
    guided = gen.sample(2, condition="101", seed=3, guidance=3.0)
    assert all(torch.equal(plain[0][k], same[0][k]) for k in plain[0])
    assert not torch.equal(plain[0]["fc.weight"], guided[0]["fc.weight"])
    assert all(torch.isfinite(v).all() for sd in guided for v in sd.values()
               if v.is_floating_point())
    gen.save_pretrained(tmp_path / "g")
    again = load_generator(tmp_path / "g").sample(2, condition="101", seed=3, guidance=3.0)
    assert torch.equal(again[1]["fc.weight"], guided[1]["fc.weight"])
    files = gen.sample_to_files([tmp_path / "a.safetensors"], condition="101", seed=3,
                                guidance=3.0)
    assert files[0].is_file()
    with pytest.raises(ValueError, match="condition_dropout > 0"):
        fit().sample(1, condition="101", guidance=2.0)
    with pytest.raises(ValueError, match="trained with conditions"):
        RPG(config=RPGConfig(**TINY), backbone=backbone).fit(
            CheckpointSet.from_state_dicts(sds), progress=False).sample(1, guidance=2.0)
    with pytest.raises(ValueError, match="guidance must be"):
        gen.sample(1, condition="101", guidance=-1.0)
    with pytest.raises(ValueError, match="condition_dropout"):
        RPGConfig(**TINY, condition_dropout=1.0)
