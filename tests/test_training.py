"""The one training engine: schedules, resume rules, training state files, devices, registry,
config groups, generator files, and a real 2-process data-parallel launch (slow)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from paramgen import CheckpointSet, train_state
from paramgen.methods import RPG, RPGConfig, load_generator
from paramgen.methods.registry import get_method, method_names
from paramgen.training import Engine, Runtime, Stage, resolve_device

TINY = dict(token_size=16, d_model=(32, 32), d_state=4, denoiser_channels=(1, 8, 16),
            num_train_timesteps=50, batch_size=4, diffusion_batch=32, lr=1e-3, steps=6,
            sampler="ddim", sampling_steps=5, save_every=2, backbone="lstm")


def sds(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [{"w": torch.randn(5, 7, generator=g), "b": torch.randn(5, generator=g)}
            for _ in range(n)]


class Quadratic:
    """A minimal method: one stage that pulls a vector towards a target."""

    def __init__(self, steps=5, schedule="cosine", warmup=0):
        self.net = nn.Linear(3, 1, bias=False)
        self.steps, self.schedule, self.warmup = steps, schedule, warmup

    def training_stages(self):
        return [Stage("fit", self.steps, self.net, lr=0.1, schedule=self.schedule,
                      warmup_steps=self.warmup)]

    def training_loss(self, ctx):
        return ((self.net.weight - torch.tensor([[1.0, 2.0, 3.0]])) ** 2).sum()


def test_lr_schedules():
    m = nn.Linear(1, 1)
    cos = Stage("s", 11, m, lr=1.0, min_lr_ratio=0.1)
    assert cos.lr_at(0) == pytest.approx(1.0) and cos.lr_at(10) == pytest.approx(0.1)
    assert cos.lr_at(5) == pytest.approx(0.55)
    lin = Stage("s", 11, m, lr=1.0, schedule="linear")
    assert lin.lr_at(5) == pytest.approx(0.5) and lin.lr_at(10) == pytest.approx(0.0)
    warm = Stage("s", 10, m, lr=1.0, schedule="constant", warmup_steps=4)
    assert [warm.lr_at(i) for i in range(5)] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])


def test_lr_scales_give_parameters_their_own_pace():
    net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    stage = Stage("s", 3, net, lr=0.1, lr_scales={"1.": 10.0})
    groups = {g["lr_scale"]: g for g in stage.param_groups()}
    assert set(groups) == {1.0, 10.0}
    assert {id(p) for p in groups[10.0]["params"]} == {id(p) for p in net[1].parameters()}

    class TwoPaced(Quadratic):
        def training_stages(self):
            return [Stage("fit", 1, self.net, lr=0.1, schedule="constant",
                          lr_scales={"weight": 5.0})]

    q = TwoPaced()
    before = q.net.weight.detach().clone()
    Engine(Runtime(device="cpu")).fit(q, progress=False)
    # Adam's first step moves each weight by lr * scale (the gradient's sign)
    assert torch.allclose((q.net.weight - before).abs(), torch.full((1, 3), 0.5), atol=1e-3)


def test_engine_trains_and_reports():
    q = Quadratic(steps=200)
    seen = []
    report = Engine(Runtime(device="cpu")).fit(q, progress=False,
                                              callback=lambda s, l: seen.append(s))
    assert seen == list(range(1, 201)) and report.processes == 1 and report.steps == 200
    assert torch.allclose(q.net.weight, torch.tensor([[1.0, 2.0, 3.0]]), atol=0.1)
    assert "trained on 1 process" in report.summary()


def test_state_files_hold_no_pickle_and_detect_tampering(tmp_path):
    state = {"step": 3, "modules": {"a": {"w": torch.ones(2)}},
             "optimizers": [{"state": {0: {"exp_avg": torch.zeros(2)}}, "param_groups": []}]}
    train_state.save(tmp_path, state)
    back = train_state.load(tmp_path)
    assert back["step"] == 3 and torch.equal(back["modules"]["a"]["w"], torch.ones(2))
    assert 0 in back["optimizers"][0]["state"]  # integer keys survive the JSON round trip
    assert not list(tmp_path.glob("*.pt"))
    # One file holds everything: the commit is one rename.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train_state.safetensors"]
    raw = (tmp_path / "train_state.safetensors").read_bytes()
    (tmp_path / "train_state.safetensors").write_bytes(raw[:-4] + b"\x00\x00\x80\x7f")
    with pytest.raises(ValueError, match="checksum"):
        train_state.load(tmp_path)
    (tmp_path / "train_state.safetensors").write_bytes(b"\x08" + b"\x00" * 7 + b"{not json")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        train_state.load(tmp_path)
    assert train_state.exists(tmp_path)  # damaged: refused by name, never silently redone
    train_state.remove(tmp_path)
    assert not train_state.exists(tmp_path) and not list(tmp_path.iterdir())


def test_a_state_of_the_earlier_two_file_format_still_resumes(tmp_path):
    """Format 1 (weights + train_state.json naming their checksum) loads; the next save
    replaces the pair with the one file."""
    import hashlib
    import json

    from safetensors.torch import save_file

    save_file({"modules.a.w": torch.ones(2)}, str(tmp_path / "train_state.safetensors"))
    digest = hashlib.sha256((tmp_path / "train_state.safetensors").read_bytes()).hexdigest()
    (tmp_path / "train_state.json").write_text(json.dumps({
        "format": "paramgen.train_state", "format_version": 1, "weights_sha256": digest,
        "state": {"step": 7, "modules": {"a": {"w": {"__tensor__": "modules.a.w"}}}}}))
    legacy_json = (tmp_path / "train_state.json").read_text()
    assert train_state.exists(tmp_path)
    back = train_state.load(tmp_path)
    assert back["step"] == 7 and torch.equal(back["modules"]["a"]["w"], torch.ones(2))
    # A torn pair of the earlier format is refused with the way out.
    save_file({"modules.a.w": torch.zeros(2)}, str(tmp_path / "train_state.safetensors"))
    with pytest.raises(ValueError, match="checksum.*--restart"):
        train_state.load(tmp_path)
    train_state.save(tmp_path, dict(back, step=8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train_state.safetensors"]
    assert train_state.load(tmp_path)["step"] == 8
    # A kill after the new file's rename but before the old JSON's deletion: the new one wins.
    (tmp_path / "train_state.json").write_text(legacy_json)
    assert train_state.load(tmp_path)["step"] == 8


def test_resume_refuses_another_seed_or_step_count_and_restart_starts_over(tmp_path):
    ckpts = CheckpointSet.from_state_dicts(sds())
    RPG(config=RPGConfig(**TINY)).fit(ckpts, progress=False, workdir=tmp_path, seed=0)
    with pytest.raises(ValueError, match="seed"):
        RPG(config=RPGConfig(**TINY)).fit(ckpts, progress=False, workdir=tmp_path, seed=1)
    with pytest.raises(ValueError, match="stage_steps"):
        RPG(config=RPGConfig(**TINY)).fit(ckpts, steps=3, progress=False, workdir=tmp_path)
    with pytest.raises(ValueError, match="settings"):
        RPG(config=RPGConfig(**dict(TINY, lr=5e-3))).fit(ckpts, progress=False, workdir=tmp_path)
    # Runtime and sampling settings are not part of what a resume must agree with.
    done = RPG(config=RPGConfig(**dict(TINY, save_every=1, device="cpu", sampling_steps=9)))
    steps = []
    done.fit(ckpts, progress=False, workdir=tmp_path, callback=lambda s, l: steps.append(s))
    assert steps == []  # the saved run was complete: nothing left to train
    assert done.train_report.resumed_from == 6
    train_state.remove(tmp_path)
    again = RPG(config=RPGConfig(**TINY))
    again.fit(ckpts, progress=False, workdir=tmp_path, seed=1)
    assert again.train_report.resumed_from == 0


def test_time_based_saves(tmp_path):
    ckpts = CheckpointSet.from_state_dicts(sds())
    cfg = RPGConfig(**dict(TINY, save_every=1000, save_every_seconds=1e-3, steps=4))

    class Stop(Exception):
        pass

    def stop(step, loss):
        if step == 2:
            raise Stop

    with pytest.raises(Stop):
        RPG(config=cfg).fit(ckpts, progress=False, workdir=tmp_path, callback=stop)
    # save_every=1000 steps would have saved nothing by step 2; the clock saved step 1
    assert train_state.load(tmp_path)["step"] == 1


def test_devices_and_runtime_errors():
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="not a torch device"):
        resolve_device("gpu0")
    with pytest.raises(ValueError, match="save_every"):
        RPGConfig(**dict(TINY, save_every=0))
    with pytest.raises(ValueError, match="denoiser_channels"):
        RPGConfig(**dict(TINY, denoiser_channels=[]))
    with pytest.raises(ValueError, match="lr"):
        RPGConfig(**dict(TINY, lr=float("nan")))


def test_config_groups_and_round_trip():
    cfg = RPGConfig(**TINY)
    assert "device" in cfg.fields_of("runtime") and "sampler" in cfg.fields_of("sampling")
    assert "lr" in cfg.fields_of("training") and "token_size" in cfg.fields_of("model")
    same = cfg.replace(device="cpu", save_every=7, sampling_steps=3)
    assert same.training_fingerprint() == cfg.training_fingerprint()
    assert cfg.replace(lr=1.0).training_fingerprint() != cfg.training_fingerprint()
    assert RPGConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown RPG config keys"):
        RPGConfig.from_dict({"tokensize": 3})


def test_registry_and_lazy_import():
    assert {"rpg", "pdiff"} <= set(method_names())
    assert get_method("rpg") is RPG
    with pytest.raises(ValueError, match="unknown generator method"):
        get_method("gan")
    # registering a method: tests/test_contract.py (a fixture that removes it again)
    code = "import sys, paramgen; import paramgen.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")})
    assert out.stdout.strip() == "False", out.stderr


def test_generator_files_are_checked_on_load(tmp_path):
    gen = RPG(config=RPGConfig(**TINY)).fit(CheckpointSet.from_state_dicts(sds()), progress=False)
    gen.save_pretrained(tmp_path / "g")
    assert load_generator(tmp_path / "g").sample(1, seed=0)[0]["w"].shape == (5, 7)
    weights = tmp_path / "g" / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-3] ^= 0xFF  # one flipped byte in the last tensor's data
    weights.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="checksum"):
        load_generator(tmp_path / "g")
    # NaN weights with a matching checksum (a generator saved broken) are refused too.
    from safetensors.torch import load_file, save_file

    gen.save_pretrained(tmp_path / "h")
    tensors = load_file(str(tmp_path / "h" / "model.safetensors"))
    name = next(k for k in tensors if k.startswith("network.") and tensors[k].is_floating_point())
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    save_file(tensors, str(tmp_path / "h" / "model.safetensors"))
    cfg = json.loads((tmp_path / "h" / "config.json").read_text())
    cfg.pop("weights_sha256")
    (tmp_path / "h" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="NaN"):
        load_generator(tmp_path / "h")


def test_conditions_are_validated():
    conds = [[1, 0], [0, 1], [1, 1], [0, 0], [1, 0], [0, 1]]
    gen = RPG(config=RPGConfig(**TINY)).fit(
        CheckpointSet.from_state_dicts(sds(), conditions=conds), progress=False)
    assert len(gen.sample(1, condition="10")) == 1
    for bad, msg in ((["nan", 1], "NaN"), ([1e6, 0], "outside"), ("1x", "bit string"),
                     ([1, 0, 1], "size 2")):
        value = [float(v) for v in bad] if isinstance(bad, list) else bad
        with pytest.raises(ValueError, match=msg):
            gen.sample(1, condition=value)


def test_partial_generation_is_shared_by_every_method():
    from paramgen.methods import PDiff

    data = sds()
    for gen in (RPG(config=RPGConfig(**dict(TINY, keys="b"))),
                PDiff(preset="cpu", keys="b", enc_channels=(4, 4), dec_channels=(4, 4),
                      latent_dim=8, denoiser_channels=(1, 8), denoiser_fc_hidden=16,
                      sampler="ddim", sampling_steps=5)):
        gen.fit(CheckpointSet.from_state_dicts(data), steps=4, progress=False)
        out = gen.sample(2, seed=0)
        for sd in out:
            assert list(sd) == ["w", "b"]
            assert torch.equal(sd["w"], data[0]["w"])        # copied from the reference
            assert not torch.equal(sd["b"], data[0]["b"])    # generated


@pytest.mark.slow
def test_two_process_launch_trains_one_generator(tmp_path):
    """`accelerate launch` with 2 CPU processes: gradients averaged, one generator written."""
    pytest.importorskip("accelerate")
    ckpts = CheckpointSet.from_state_dicts(sds(8))
    ckpts.save(tmp_path / "ck")
    out = tmp_path / "gen"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src"),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
           "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", "29517", "-m", "paramgen", "train", "--ckpts",
           str(tmp_path / "ck"), "--out", str(out), "--quiet", "--steps", "6", "--device", "cpu"]
    for item in ("token_size=16", "d_model=32", "d_state=4", "denoiser_channels=[1,8]",
                 "backbone=\"lstm\"", "batch_size=4", "diffusion_batch=16"):
        cmd += ["--set", item]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "trained on 2 processes" in done.stdout
    assert done.stdout.count("trained rpg") == 1        # only the main process prints
    gen = load_generator(out)
    assert gen.sample(1)[0]["w"].shape == (5, 7)
