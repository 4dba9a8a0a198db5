"""Bad inputs, sweep of 2026-12-06: the surfaces added since the last sweep (test_bad_inputs.py).

`paramgen align` and `train --align`, IGPG, adapters and PEFT folders, `generate` prompts, and
settings that cannot work under `accelerate launch`; plus the refusals of issue 24 item 4 (a
refused `collect` leaves the file system as it found it). Each case states its expected outcome:
a clear one-line error naming the culprit (exit 2 on the command line, no traceback), or the
right result. Only public names are used; models and collections are tiny and made here.
docs/reliability.md (section 11) lists every case.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import paramgen as pg
from paramgen import text as text_encoder
from paramgen.cli import main

peft = pytest.importorskip("peft", reason="the adapters extra is not installed")

from paramgen.adapters import (LoraRecipe, adapter_state, attach, import_peft,  # noqa: E402
                               load_adapter, read_peft_folder, sample_to_peft, write_peft_folder)

NOPROG = ["--no-progress"]
BITS = ["0101010101", "1100000000", "0000011111", "1001001001"]
# A small RPG: trains in about a second on one thread.
RPG_TINY = dict(token_size=64, d_model=(32, 32), d_state=4, denoiser_channels=(1, 8, 16),
                num_train_timesteps=50, batch_size=4, diffusion_batch=32, lr=1e-3, steps=3,
                sampler="ddim", sampling_steps=3, backbone="lstm")
MLP_INFO = {"arch": "mlp", "in_shape": [1, 8, 8], "num_classes": 10,
            "model_kwargs": {"hidden": [4]}, "data": "digits"}


def _mlps(n: int, hidden: int = 4, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    return [pg.zoo.create("mlp", (1, 8, 8), 10, seed=seed + i, hidden=[hidden]).state_dict()
            for i in range(n)]


def _hash_encode(texts):
    """A seeded stand-in for the sentence encoder (loading MiniLM takes seconds)."""
    import hashlib

    rows = [torch.nn.functional.normalize(torch.randn(
        384, generator=torch.Generator().manual_seed(int(hashlib.sha256(t.encode()).hexdigest()[:8],
                                                         16))), dim=0) for t in texts]
    return torch.stack(rows) if rows else torch.zeros(0, 384)


def _no_encoder(texts):
    raise text_encoder.TextEncoderMissing("the offline text encoder is not installed "
                                          f"(sentence_transformers); install it with: "
                                          f"{text_encoder.INSTALL_HINT}")


def _base():
    from paramgen.adapters.base import build

    return build({"in_shape": [1, 8, 8], "num_classes": 2,
                  "model_kwargs": {"dim": 16, "heads": 2, "mlp_dim": 16}}, seed=0).eval()


def _peft_config(model) -> dict:
    cfg = model.peft_config["default"].to_dict()
    return json.loads(json.dumps(cfg, default=lambda v: sorted(v) if isinstance(v, set)
                                 else str(v)))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """Every file and folder the cases point at (shared: the CLI rows check nothing changed)."""
    t = tmp_path_factory.mktemp("sweep")
    w: dict[str, Path] = {"tmp": t}
    torch.manual_seed(0)
    pg.CheckpointSet.from_state_dicts(_mlps(3), runs=[0, 1, 2], info=MLP_INFO).save(t / "mlp")
    pg.CheckpointSet.from_state_dicts(_mlps(1), info=MLP_INFO).save(t / "one")
    pg.CheckpointSet.from_state_dicts(_mlps(3), runs=[0, 1, 2],
                                      info={"note": "no arch"}).save(t / "noarch")
    # the manifest says cnn-s, the files hold MLPs (a collection of another architecture)
    pg.CheckpointSet.from_state_dicts(_mlps(3), runs=[0, 1, 2],
                                      info={**MLP_INFO, "arch": "cnn-s",
                                            "model_kwargs": {}}).save(t / "otherarch")
    # the manifest says hidden 8, the files hold hidden 4 (mixed widths of one architecture)
    pg.CheckpointSet.from_state_dicts(_mlps(3), runs=[0, 1, 2],
                                      info={**MLP_INFO, "model_kwargs": {"hidden": [8]}}
                                      ).save(t / "otherwidth")
    pg.CheckpointSet.from_state_dicts(_mlps(3), runs=[0, 1, 2],
                                      info={**MLP_INFO, "in_shape": [3, 32, 32]}
                                      ).save(t / "othershape")
    pg.CheckpointSet.from_state_dicts(_mlps(3), runs=[0, 1, 2],
                                      info={**MLP_INFO, "arch": "nosuchnet"}).save(t / "unknown")
    # IGPG collections: one float64 model zoo beside a float32 one
    pg.CheckpointSet.from_state_dicts(_mlps(3), info={**MLP_INFO, "dataset": "digits"}
                                      ).save(t / "f32")
    pg.CheckpointSet.from_state_dicts([{k: v.double() for k, v in sd.items()} for sd in _mlps(3)],
                                      info={**MLP_INFO, "dataset": "digits"}).save(t / "f64")
    # a conditioned generator (task grid of 4 tasks) and an unconditioned one
    grid = pg.CheckpointSet.from_state_dicts(
        _mlps(4, hidden=4), conditions=[[float(b) for b in bits] for bits in BITS],
        info={**MLP_INFO, "num_classes": 10})
    pg.RPG(**RPG_TINY).fit(grid, progress=False).save_pretrained(t / "cgen")
    pg.RPG(**RPG_TINY).fit(pg.CheckpointSet.load(t / "mlp"), progress=False
                           ).save_pretrained(t / "ugen")
    w["badjson_gen"] = t / "badjson_gen"
    w["badjson_gen"].mkdir()
    (w["badjson_gen"] / "config.json").write_text("{not json")
    w["file"] = t / "plain.txt"
    w["file"].write_text("a user's file\n")
    # PEFT folders: good ones (r=2), one of another rank, and damaged ones
    base = _base()
    for name, r, seed in [("a0", 2, 0), ("a1", 2, 1), ("r4", 4, 2)]:
        model = attach(base, LoraRecipe(r=r), "head", seed=seed)
        write_peft_folder(t / name, adapter_state(model), _peft_config(model))
    cfg = json.loads((t / "a0" / "adapter_config.json").read_text())
    for name, edit in [
        ("otherbase", lambda c: c.update(base_model_name_or_path="gpt2")),
        ("othertargets", lambda c: c.update(target_modules=["nothere"])),
        ("nopefttype", lambda c: c.pop("peft_type")),
    ]:
        d = t / name
        d.mkdir()
        (d / "adapter_model.safetensors").write_bytes((t / "a1" / "adapter_model.safetensors")
                                                      .read_bytes())
        c = json.loads(json.dumps(cfg))
        edit(c)
        (d / "adapter_config.json").write_text(json.dumps(c))
    for name in ["noweights", "binonly", "corrupt", "empty", "badcfg", "noconfig"]:
        (t / name).mkdir()
    (t / "noweights" / "adapter_config.json").write_text(json.dumps(cfg))
    (t / "binonly" / "adapter_config.json").write_text(json.dumps(cfg))
    (t / "binonly" / "adapter_model.bin").write_bytes(b"\x80\x04pickle")
    (t / "corrupt" / "adapter_config.json").write_text(json.dumps(cfg))
    (t / "corrupt" / "adapter_model.safetensors").write_bytes(
        (t / "a0" / "adapter_model.safetensors").read_bytes()[:-17])
    (t / "empty" / "adapter_config.json").write_text(json.dumps(cfg))
    save_file({}, str(t / "empty" / "adapter_model.safetensors"))
    (t / "badcfg" / "adapter_config.json").write_text("{'peft_type': LORA")
    (t / "badcfg" / "adapter_model.safetensors").write_bytes(
        (t / "a0" / "adapter_model.safetensors").read_bytes())
    (t / "noconfig" / "adapter_model.safetensors").write_bytes(
        (t / "a0" / "adapter_model.safetensors").read_bytes())
    # an adapter for a wider base (dim 32): its tensors do not fit the dim-16 base
    from paramgen.adapters.base import build

    wide = build({"in_shape": [1, 8, 8], "num_classes": 2,
                  "model_kwargs": {"dim": 32, "heads": 2, "mlp_dim": 16}}, seed=0)
    model = attach(wide, LoraRecipe(r=2), "head", seed=0)
    write_peft_folder(t / "wide", adapter_state(model), _peft_config(model))
    for p in t.iterdir():
        w.setdefault(p.name, p)
    return w


def _fill(argv: list[str], world: dict[str, Path]) -> list[str]:
    return [a.format(**{k: str(v) for k, v in world.items()}) for a in argv]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.startswith(".paramgen")}


def _one_line(capsys, argv, world, status=2) -> str:
    rc = main(_fill(argv, world))
    err = capsys.readouterr().err
    assert rc == status, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"paramgen {argv[0]}: error: "), err
    return lines[0]


# ================================================================= command-line rows: exit 2
G = ["--dry-run", "--classes", "digits"]
# (id, argv with {name} placeholders, words the one-line error must contain)
CLI_ROWS = [
    # -- refusals found after the output folder was made: no folder may stay (issue 24, 4a)
    ("sample-condition-unconditioned", ["sample", "--gen", "{ugen}", "--out", "{tmp}/s/deeper/x",
                                        "--condition", "0101010101"],
     ["trained without conditions"]),
    ("collect-grid-data-missing", ["collect", "--tasks", "2", "--data", "cifar10", "--data-root",
                                   "{tmp}/nocifar", "--out", "{tmp}/l/grid", *NOPROG],
     ["CIFAR-10 not found", "nocifar"]),
    ("demo-steps-0", ["demo", "--out", "{tmp}/x/demo", "--steps", "0"],
     ["--steps must be at least 1, got 0"]),
    ("demo-spread-0", ["demo", "--out", "{tmp}/x/demo", "--spread", "0"],
     ["--spread", "got 0"]),
    ("demo-no-samples", ["demo", "--out", "{tmp}/x/demo", "-n", "0"],
     ["--num-samples must be at least 1"]),
    # -- paramgen align
    ("align-no-arch", ["align", "--ckpts", "{noarch}", "--out", "{tmp}/x"],
     ["names no zoo architecture", "--model FILE.py:CLASS"]),
    ("align-other-arch", ["align", "--ckpts", "{otherarch}", "--out", "{tmp}/x"],
     ["does not match the checkpoints", "0.weight"]),
    ("align-other-width", ["align", "--ckpts", "{otherwidth}", "--out", "{tmp}/x"],
     ["does not match the checkpoints", "other shapes"]),
    ("align-wrong-in-shape", ["align", "--ckpts", "{othershape}", "--out", "{tmp}/x"],
     ["does not match the checkpoints"]),
    ("align-unknown-arch", ["align", "--ckpts", "{unknown}", "--out", "{tmp}/x"],
     ["nosuchnet"]),
    ("align-reference-high", ["align", "--ckpts", "{mlp}", "--out", "{tmp}/x", "--reference",
                              "3", "--quiet"], ["reference=3", "out of range", "3 checkpoints"]),
    ("align-reference-low", ["align", "--ckpts", "{mlp}", "--out", "{tmp}/x", "--reference",
                             "-4", "--quiet"], ["reference=-4", "out of range"]),
    ("align-out-is-input", ["align", "--ckpts", "{mlp}", "--out", "{mlp}"],
     ["is the input folder"]),
    ("align-out-is-file", ["align", "--ckpts", "{mlp}", "--out", "{file}", "--quiet"],
     ["plain.txt"]),
    ("align-missing", ["align", "--ckpts", "{tmp}/nowhere", "--out", "{tmp}/x"],
     ["nowhere", "does not exist"]),
    ("align-activations-no-data",
     ["align", "--ckpts", "{noarch}", "--out", "{tmp}/x", "--method", "activations"],
     ["names no zoo architecture"]),
    # -- paramgen train --align / accelerate settings that cannot work
    ("train-device-cuda-on-cpu", ["train", "--ckpts", "{mlp}", "--out", "{tmp}/g", "--device",
                                  "cuda:7", "--set", "steps=1"], ["'cuda:7'"]),
    ("train-device-unknown", ["train", "--ckpts", "{mlp}", "--out", "{tmp}/g", "--device",
                              "tpu"], ["'tpu'"]),
    ("train-autocast-fp16", ["train", "--ckpts", "{mlp}", "--out", "{tmp}/g", "--set",
                             "autocast=\"fp16\""], ["autocast", "fp16"]),
    ("train-save-every-0", ["train", "--ckpts", "{mlp}", "--out", "{tmp}/g", "--set",
                            "save_every=0"], ["save_every", "0"]),
    ("train-save-every-seconds-neg", ["train", "--ckpts", "{mlp}", "--out", "{tmp}/g", "--set",
                                      "save_every_seconds=-5"], ["save_every_seconds", "-5"]),
    ("train-steps-0", ["train", "--ckpts", "{mlp}", "--out", "{tmp}/g", "--steps", "0"],
     ["steps", "0"]),
    ("train-set-not-key-value", ["train", "--ckpts", "{mlp}", "--out", "{tmp}/g", "--set",
                                 "steps"], ["steps", "KEY=VALUE"]),
    ("train-batch-size-0", ["train", "--ckpts", "{mlp}", "--out", "{tmp}/g", "--set",
                            "batch_size=0"], ["batch_size", "0"]),
    ("train-lr-inf", ["train", "--ckpts", "{mlp}", "--out", "{tmp}/g", "--set", "lr=1e400"],
     ["lr", "inf"]),
    ("train-set-unknown-key", ["train", "--ckpts", "{mlp}", "--out", "{tmp}/g", "--set",
                               "num_gpus=8"], ["num_gpus"]),
    # -- IGPG on the command line
    ("igpg-sample-gen-missing",
     ["sample", "--gen", "{tmp}/nowhere", "--like", "{tmp}/nowhere.safetensors", "--out",
      "{tmp}/s"], ["nowhere"]),
    ("igpg-condition-from", ["train", "--method", "igpg", "--ckpts", "{f32}", "--out",
                             "{tmp}/g", "--condition-from", "manifest"], ["--condition-from"]),
    ("igpg-no-text-encoder", ["train", "--method", "igpg", "--ckpts", "{f32}", "--preset",
                              "tiny", "--out", "{tmp}/ig", "--quiet"],
     ["text encoder", "pip install"]),
    # -- adapters on the command line
    ("lora-rank-0", ["collect", "--lora", "r=0", "--tasks", "2", "--out", "{tmp}/l", *NOPROG],
     ["r"]),
    ("lora-rank-text", ["collect", "--lora", "r=four", "--tasks", "2", "--out", "{tmp}/l",
                        *NOPROG], ["four"]),
    ("lora-unknown-key", ["collect", "--lora", "rank=4", "--tasks", "2", "--out", "{tmp}/l",
                          *NOPROG], ["rank"]),
    ("lora-no-tasks", ["collect", "--lora", "r=2", "--out", "{tmp}/l", *NOPROG],
     ["--lora needs --tasks"]),
    ("lora-base-missing", ["collect", "--lora", "r=2", "--tasks", "2", "--base",
                           "{tmp}/nobase", "--out", "{tmp}/l", *NOPROG],
     ["nobase", "no such base folder"]),
    ("lora-base-is-file", ["collect", "--lora", "r=2", "--tasks", "2", "--base", "{file}",
                           "--out", "{tmp}/l", *NOPROG], ["plain.txt", "no such base folder"]),
    ("lora-duplicate-key", ["collect", "--lora", "r=2,r=4", "--tasks", "2", "--out", "{tmp}/l",
                            *NOPROG], ["'r' is given twice"]),
    ("lora-dropout-1", ["collect", "--lora", "dropout=1", "--tasks", "2", "--out", "{tmp}/l",
                        *NOPROG], ["dropout", "1"]),
    ("lora-alpha-nan", ["collect", "--lora", "alpha=nan", "--tasks", "2", "--out", "{tmp}/l",
                        *NOPROG], ["alpha", "nan"]),
    ("lora-tasks-0", ["collect", "--lora", "r=2", "--tasks", "0", "--out", "{tmp}/l", *NOPROG],
     ["tasks='0'", "selects no task"]),
    ("lora-base-is-peft-folder", ["collect", "--lora", "r=2", "--tasks", "2", "--base", "{a0}",
                                  "--out", "{tmp}/l", *NOPROG], ["a0", "base folder"]),
    # -- paramgen generate
    ("generate-empty-prompt", ["generate", "--prompt", "", *G], ["prompt", "empty"]),
    ("generate-blank-prompt", ["generate", "--prompt", " \t\n ", *G], ["prompt", "empty"]),
    ("generate-all-classes", ["generate", "--prompt", "all digits", *G],
     ["'all digits'", "names no class"]),
    ("generate-every-class", ["generate", "--prompt", "even or odd", *G],
     ["trivial task", "every class"]),
    ("generate-no-class-selected", ["generate", "--prompt", "odd and not odd", *G],
     ["trivial task", "selects no class"]),
    ("generate-no-class", ["generate", "--prompt", "no digits at all", *G], ["prompt"]),
    ("generate-digit-out-of-range", ["generate", "--prompt", "digits 3 and 11", *G], ["11"]),
    ("generate-gibberish", ["generate", "--prompt", "qwxz blorf", "--backend", "rules", *G],
     ["qwxz"]),
    ("generate-nul-byte", ["generate", "--prompt", "even\x00digits", "--backend", "rules", *G],
     ["prompt"]),
    ("generate-unknown-backend", ["generate", "--prompt", "even digits", "--backend", "gpt9",
                                  *G], ["gpt9"]),
    ("generate-unknown-classes", ["generate", "--prompt", "even", "--dry-run", "--classes",
                                  "imagenet"], ["imagenet"]),
    ("generate-one-class", ["generate", "--prompt", "cats", "--dry-run", "--classes", "cat"],
     ["class"]),
    ("generate-task-wrong-length", ["generate", "--task", "0101", *G], ["0101", "length"]),
    ("generate-task-not-bits", ["generate", "--task", "01x1010101", *G], ["01x1010101"]),
    ("generate-no-out", ["generate", "--gen", "{cgen}", "--task", "0101010101"],
     ["--gen and --out"]),
    ("generate-gen-missing", ["generate", "--gen", "{tmp}/nogen", "--task", "0101010101",
                              "--out", "{tmp}/m.safetensors"], ["nogen", "config.json"]),
    ("generate-gen-bad-json", ["generate", "--gen", "{badjson_gen}", "--task", "0101010101",
                               "--out", "{tmp}/m.safetensors"], ["config.json", "JSON"]),
    ("generate-unconditioned-gen", ["generate", "--gen", "{ugen}", "--task", "0101010101",
                                    "--out", "{tmp}/m.safetensors"],
     ["without task conditions"]),
    ("generate-out-is-folder", ["generate", "--gen", "{cgen}", "--task", "0101010101",
                                "--out", "{a0}", "--no-eval"], ["a0"]),
]


@pytest.mark.parametrize("argv,words", [r[1:] for r in CLI_ROWS], ids=[r[0] for r in CLI_ROWS])
def test_cli_bad_input_is_one_line(argv, words, world, capsys, monkeypatch) -> None:
    monkeypatch.setattr(text_encoder, "encode", _no_encoder)  # no case may load MiniLM
    before, names = _snapshot(world["tmp"]), sorted(p.name for p in world["tmp"].iterdir())
    try:
        line = _one_line(capsys, argv, world)
        for word in words:
            assert word.format(**{k: str(v) for k, v in world.items()}) in line, (word, line)
        assert _snapshot(world["tmp"]) == before  # nothing lost, changed or added
        assert sorted(p.name for p in world["tmp"].iterdir()) == names  # no folder left behind
    finally:
        for name in ("x", "l", "g", "ig", "s"):  # a row that wrongly wrote: do not fail the next
            shutil.rmtree(world["tmp"] / name, ignore_errors=True)


# argparse's own refusals: exit 2, the usage, and a last line naming the option and value
@pytest.mark.parametrize("argv,words", [
    (["train", "--ckpts", "x", "--out", "y", "--align", "sometimes"], ["--align", "sometimes"]),
    (["align", "--ckpts", "x", "--out", "y", "--method", "cosine"], ["--method", "cosine"]),
    (["align", "--ckpts", "x", "--out", "y", "--by", "task"], ["--by", "task"]),
    (["train", "--ckpts", "x", "--out", "y", "--steps", "2.5"], ["--steps", "2.5"]),
    (["generate", "--prompt", "odd", "--task", "0101010101", "--dry-run"],
     ["--task", "not allowed with"]),
    (["train", "--ckpts", "x", "--out", "y", "--threads", "0"], ["--threads", "0"]),
], ids=["align-mode", "align-method", "align-by", "steps-float", "prompt-and-task", "threads-0"])
def test_cli_option_errors_name_the_option(argv, words, capsys) -> None:
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"paramgen {argv[0]}: error: "), err  # the command is named
    for word in words:
        assert word in last, (word, last)


# ================================================================= command line: right results
def test_align_of_one_checkpoint_is_a_copy(world, capsys, tmp_path) -> None:
    assert main(["align", "--ckpts", str(world["one"]), "--out", str(tmp_path / "a"),
                 "--quiet"]) == 0
    out = pg.CheckpointSet.load(tmp_path / "a")
    src = pg.CheckpointSet.load(world["one"])
    assert len(out) == 1 and all(torch.equal(out[0][k], src[0][k]) for k in src.keys)


@pytest.mark.parametrize("name,why", [
    ("noarch", "align: not tested (the collection names no zoo architecture; give --model"),
    ("otherwidth", "align: skipped (the model's state dict does not match the checkpoints")])
def test_train_align_auto_skips_what_it_cannot_trace_and_says_why(name, why, world, capsys,
                                                                    tmp_path) -> None:
    sets = [f"{k}={json.dumps(v)}" for k, v in RPG_TINY.items() if k != "steps"]
    argv = ["train", "--ckpts", str(world[name]), "--out", str(tmp_path / "g"), "--steps", "1",
            "--quiet"]
    for item in sets:
        argv += ["--set", item]
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert why.replace("the collection", str(world[name])) in out and "model=" not in out
    assert (tmp_path / "g" / "config.json").is_file()


@pytest.mark.parametrize("prompt,bits", [
    ("EVEN DIGITS", "1010101010"),
    ("even " * 50_000, "1010101010"),               # 250 000 characters, read in about a second
    ("not not odd", "0101010101"),
    ("{{odd}}", "0101010101"),
])
def test_generate_reads_odd_but_valid_prompts(prompt, bits, capsys) -> None:
    assert main(["generate", "--prompt", prompt, *G, "--backend", "rules"]) == 0
    assert f"-> {bits}" in capsys.readouterr().out


def test_generate_writes_the_model_a_prompt_names(world, tmp_path, capsys) -> None:
    out = tmp_path / "odd.safetensors"
    assert main(["generate", "--gen", str(world["cgen"]), "--prompt", "odd digits", "--backend",
                 "rules", "--out", str(out), "--no-eval"]) == 0
    from safetensors.torch import load_file

    sd = load_file(str(out))
    assert {k: v.shape for k, v in sd.items()} == {k: v.shape for k, v in _mlps(1)[0].items()}
    assert "0101010101" in capsys.readouterr().out


@pytest.mark.parametrize("prompt,word", [
    ("les chiffres pairs", "'les'"),
    ("gerade Zahlen", "'gerade'"),
    ("偶数", "'偶数'"),
    ("números pares", "'números'"),
    ("even \x1b]0;owned\x07 digits", "\\x1b"),      # an escape sequence is shown, never sent
    ("even\x00digits", "\\x00"),
    ("%s%s%n", "'%'"),
    ("even digits; rm -rf /", "'rm'"),
])
def test_foreign_and_hostile_prompts_are_named_and_escaped(prompt, word, capsys) -> None:
    rc = main(["generate", "--prompt", prompt, *G, "--backend", "rules"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert word in err, err
    assert not any(c in err for c in "\x1b\x00\x07"), repr(err)  # no raw control characters


# ================================================================= Python API: align
class _DataDependent(nn.Module):
    """Python control flow on the data: torch.export cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(64, 4), nn.Linear(4, 10)

    def forward(self, x):
        h = self.a(x.flatten(1))
        if h.sum() > 0:
            h = h.relu()
        return self.b(h)


class _CumSum(nn.Module):
    """An operation across hidden units (cumsum) that has no permutation rule."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(64, 4), nn.Linear(4, 10)

    def forward(self, x):
        return self.b(self.a(x.flatten(1)).cumsum(-1))


def _of(model_cls, n=3):
    return pg.CheckpointSet.from_state_dicts([model_cls().state_dict() for _ in range(n)],
                                             runs=list(range(n)))


@pytest.fixture(scope="module")
def mlp3(world):
    return pg.CheckpointSet.load(world["mlp"])


ALIGN_CASES = [
    ("untraceable", lambda c: pg.align(_of(_DataDependent), model=_DataDependent(),
                                       example_input=torch.randn(2, 1, 8, 8)),
     ValueError, ["could not trace _DataDependent"]),
    ("no-symmetry-rule", lambda c: pg.align(_of(_CumSum), model=_CumSum(),
                                            example_input=torch.randn(2, 1, 8, 8)),
     ValueError, ["cumsum", "does not know"]),
    ("input-wrong-shape", lambda c: pg.align(c, example_input=torch.randn(2, 5)),
     ValueError, ["could not trace MLP", "(2, 5)"]),
    ("model-other-width", lambda c: pg.align(c, model=pg.zoo.create("mlp", (1, 8, 8), 10,
                                                                    hidden=[6])),
     ValueError, ["does not match the checkpoints", "net.0.weight"]),
    ("model-other-arch", lambda c: pg.align(c, model=pg.zoo.create("cnn-s", (1, 8, 8), 10)),
     ValueError, ["does not match the checkpoints", "keys only in the checkpoints"]),
    ("method-unknown", lambda c: pg.align(c, method="cosine"), ValueError, ["cosine"]),
    ("by-unknown", lambda c: pg.align(c, by="task"), ValueError, ["'task'"]),
    ("rounds-0", lambda c: pg.align(c, rounds=0), ValueError, ["rounds must be >= 1"]),
    ("task-runs-unknown", lambda c: pg.align(c, task_runs="split"), ValueError, ["'split'"]),
    ("reference-str", lambda c: pg.align(c, reference="0"), ValueError, ["got str"]),
    ("reference-float", lambda c: pg.align(c, reference=1.0), ValueError, ["got float"]),
    ("reference-bool", lambda c: pg.align(c, reference=True), ValueError, ["got True"]),
    ("reference-sd-missing-keys",
     lambda c: pg.align(c, reference={"net.0.weight": torch.zeros(4, 64)}),
     ValueError, ["lacks keys", "net.2.weight"]),
    ("activations-without-data",
     lambda c: pg.align(pg.CheckpointSet.from_state_dicts(list(c), runs=c.runs,
                                                          info={**MLP_INFO, "data": None}),
                        method="activations"),
     ValueError, ["needs inputs", "inputs="]),
]


@pytest.mark.parametrize("call,exc,words", [r[1:] for r in ALIGN_CASES],
                         ids=[r[0] for r in ALIGN_CASES])
def test_align_refuses_with_the_culprit_named(call, exc, words, mlp3) -> None:
    with pytest.raises(exc) as info:
        call(mlp3)
    message = str(info.value)
    assert "\n" not in message.strip()
    for word in words:
        assert word in message, (word, message)


# ================================================================= Python API: IGPG
@pytest.fixture(scope="module")
def igpg_mixed(world):
    """A tiny IGPG on a float32 zoo and a float64 zoo (hash text embeddings)."""
    mp = pytest.MonkeyPatch()
    mp.setattr(text_encoder, "encode", _hash_encode)
    try:
        f32 = pg.CheckpointSet.load(world["f32"])
        f64 = pg.CheckpointSet.from_state_dicts(list(pg.CheckpointSet.load(world["f64"])),
                                                info={**MLP_INFO, "dataset": "mnist1d"})
        gen = pg.IGPG(preset="tiny", vq_steps=10, prior_steps=10).fit([f32, f64],
                                                                       progress=False)
    finally:
        mp.undo()
    return gen, f32, f64


@pytest.mark.parametrize("like_dtype,dataset", [(torch.float32, "digits"),
                                                (torch.float64, "mnist1d"),
                                                (torch.float16, "digits")])
def test_igpg_zoo_of_mixed_dtypes_samples_each_dtype(igpg_mixed, like_dtype, dataset,
                                                     monkeypatch) -> None:
    gen, f32, _ = igpg_mixed
    monkeypatch.setattr(text_encoder, "encode", _hash_encode)
    like = {k: v.to(like_dtype) for k, v in f32[0].items()}
    sd = gen.sample(1, like=like, dataset=dataset)[0]
    assert {k: (v.shape, v.dtype) for k, v in sd.items()} == \
        {k: (v.shape, v.dtype) for k, v in like.items()}
    assert all(torch.isfinite(v.float()).all() for v in sd.values())


def test_igpg_samples_a_layout_it_never_saw(igpg_mixed, monkeypatch) -> None:
    gen, _, _ = igpg_mixed
    monkeypatch.setattr(text_encoder, "encode", _hash_encode)
    like = pg.zoo.create("mlp", (1, 8, 8), 10, hidden=[3]).state_dict()
    sd = gen.sample(1, like=like, dataset="digits")[0]
    assert {k: v.shape for k, v in sd.items()} == {k: v.shape for k, v in like.items()}


IGPG_CASES = [
    ("like-empty", dict(like={}), ValueError, ["no floating-point values"]),
    ("like-only-ints", dict(like={"step": torch.tensor(3)}), ValueError,
     ["no floating-point values", "step"]),
    ("like-empty-tensor", dict(like={"w": torch.zeros(0, 4)}), ValueError,
     ["no floating-point values"]),
    ("like-not-tensors", dict(like={"w": "x"}), ValueError, ["like= must be a state dict"]),
    ("like-list", dict(like=[torch.zeros(3)]), ValueError, ["got list"]),
    ("like-missing-file", dict(like="nowhere.safetensors"), FileNotFoundError,
     ["nowhere.safetensors", "no such file"]),
    ("like-mixed-dtypes", "mixed", ValueError, ["mixes floating dtypes"]),
    ("no-dataset", "nodataset", ValueError, ["pass dataset="]),
    ("n-0", dict(n=0), ValueError, ["n must be", "got 0"]),
    ("temperature-0", dict(temperature=0), ValueError, ["temperature must be > 0"]),
    ("condition-given", dict(condition="0101010101"), TypeError,
     ["unexpected sample options", "condition", "like"]),
]


@pytest.mark.parametrize("kwargs,exc,words", [r[1:] for r in IGPG_CASES],
                         ids=[r[0] for r in IGPG_CASES])
def test_igpg_sample_refuses_with_the_culprit_named(igpg_mixed, kwargs, exc, words,
                                                    monkeypatch) -> None:
    gen, f32, _ = igpg_mixed
    monkeypatch.setattr(text_encoder, "encode", _hash_encode)
    call = {"n": 1, "like": f32[0], "dataset": "digits"}
    if kwargs == "mixed":
        call["like"] = {k: (v.double() if k.endswith("bias") else v) for k, v in f32[0].items()}
    elif kwargs == "nodataset":  # a generator of two datasets must be told which
        call.pop("dataset")
    else:
        call.update(kwargs)
    with pytest.raises(exc) as info:
        gen.sample(call.pop("n"), **call)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_igpg_like_file_that_is_not_safetensors(igpg_mixed, tmp_path, monkeypatch) -> None:
    gen, _, _ = igpg_mixed
    monkeypatch.setattr(text_encoder, "encode", _hash_encode)
    (tmp_path / "m.pt").write_bytes(b"\x80\x04 a pickle")
    (tmp_path / "bad.safetensors").write_bytes(b"abcdefgh12345")
    with pytest.raises(ValueError, match=r"m\.pt.*give a \.safetensors"):
        gen.sample(1, like=tmp_path / "m.pt", dataset="digits")
    with pytest.raises(ValueError, match=r"bad\.safetensors.*not a readable \.safetensors"):
        gen.sample(1, like=tmp_path / "bad.safetensors", dataset="digits")


def test_igpg_without_the_text_encoder_says_how_to_install_it(igpg_mixed, world,
                                                              monkeypatch) -> None:
    gen, f32, _ = igpg_mixed
    monkeypatch.setattr(text_encoder, "encode", _no_encoder)
    with pytest.raises(text_encoder.TextEncoderMissing, match=r'pip install "paramgen\[text\]"'):
        pg.IGPG(preset="tiny").fit([f32], progress=False)
    # a dataset the generator has not embedded yet needs the encoder too
    with pytest.raises(text_encoder.TextEncoderMissing, match="paramgen"):
        gen.sample(1, like=f32[0], dataset="a dataset never named before")


def test_igpg_sample_command_without_the_text_encoder_is_one_line(igpg_mixed, tmp_path,
                                                                  monkeypatch, capsys) -> None:
    gen, f32, _ = igpg_mixed
    gen.save_pretrained(tmp_path / "gen")
    save_file(f32[0], str(tmp_path / "like.safetensors"))
    monkeypatch.setattr(text_encoder, "encode", _no_encoder)
    line = _one_line(capsys, ["sample", "--gen", str(tmp_path / "gen"), "--like",
                              str(tmp_path / "like.safetensors"), "--dataset", "svhn", "--out",
                              str(tmp_path / "s")], {})
    assert 'pip install "paramgen[text]"' in line and "unexpected" not in line
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("sets,words", [
    ("nodataset", ["collection 1 names no dataset"]),
    ("empty", ["empty list"]),
    ("list-of-dicts", ["collections[0] is a list"]),
], ids=["zoo-one-without-dataset", "zoo-empty", "zoo-not-checkpointsets"])
def test_igpg_fit_refuses_a_bad_zoo(sets, words, world, monkeypatch) -> None:
    monkeypatch.setattr(text_encoder, "encode", _hash_encode)
    f32 = pg.CheckpointSet.load(world["f32"])
    zoo = {"nodataset": [f32, pg.CheckpointSet.from_state_dicts(_mlps(2), info={})],
           "empty": [], "list-of-dicts": [list(f32)]}[sets]
    with pytest.raises(ValueError) as info:
        pg.IGPG(preset="tiny").fit(zoo, progress=False)
    for word in words:
        assert word in str(info.value)


# ================================================================= Python API: adapters
PEFT_CASES = [
    ("folder-missing", "nowhere", FileNotFoundError, ["nowhere", "does not exist"]),
    ("folder-is-a-file", "file", FileNotFoundError, ["plain.txt"]),
    ("config-missing", "noconfig", FileNotFoundError, ["adapter_config.json is missing"]),
    ("weights-missing", "noweights", FileNotFoundError, ["adapter_model.safetensors is missing"]),
    ("weights-pickle-only", "binonly", FileNotFoundError, ["adapter_model.bin", "pickle"]),
    ("weights-truncated", "corrupt", ValueError, ["corrupt/adapter_model.safetensors",
                                                  "unreadable"]),
    ("weights-empty", "empty", ValueError, ["holds no tensors"]),
    ("config-not-json", "badcfg", ValueError, ["adapter_config.json", "not valid JSON"]),
    ("config-no-peft-type", "nopefttype", ValueError, ["no 'peft_type'"]),
]


@pytest.mark.parametrize("name,exc,words", [r[1:] for r in PEFT_CASES],
                         ids=[r[0] for r in PEFT_CASES])
def test_damaged_peft_folders_are_named(name, exc, words, world) -> None:
    folder = world.get(name, world["tmp"] / name)
    for read in (read_peft_folder, lambda d: load_adapter(_base(), d)):
        with pytest.raises(exc) as info:
            read(folder)
        for word in words:
            assert word in str(info.value), (word, str(info.value))


@pytest.mark.parametrize("names,words", [
    (["a0", "r4"], ["r4/adapter_config.json", "'r' is 4, not 2"]),
    (["a0", "othertargets"], ["othertargets", "'target_modules'"]),
    ([], ["no adapter folders given"]),
], ids=["ranks-differ", "targets-differ", "no-folders"])
def test_import_peft_refuses_mixed_grids(names, words, world) -> None:
    with pytest.raises(ValueError) as info:
        import_peft([world[n] for n in names])
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_a_config_naming_another_base_model_is_only_bookkeeping(world) -> None:
    ckpts = import_peft([world["a0"], world["otherbase"]])
    assert len(ckpts) == 2
    model = load_adapter(_base(), world["otherbase"])
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 2)


@pytest.mark.parametrize("name,words", [
    ("wide", ["wide", "does not fit the base model", "size mismatch"]),
    ("othertargets", ["othertargets", "does not fit the base model"]),
], ids=["adapter-of-a-wider-base", "targets-the-base-lacks"])
def test_adapter_of_another_base_is_one_clear_error(name, words, world) -> None:
    with pytest.raises(ValueError) as info:
        load_adapter(_base(), world[name])
    for word in words:
        assert word in str(info.value), (word, str(info.value))


@pytest.mark.parametrize("make,words", [
    (lambda: attach(_base(), LoraRecipe.parse("targets=q,zz"), "head"), ["['zz']",
                                                                           "match no layer"]),
    (lambda: attach(_base(), LoraRecipe(r=2), "nohead"), ["'nohead'", "not a layer"]),
    (lambda: LoraRecipe.parse("r=2,targets=q,targets=v"), ["'targets' is given twice"]),
    (lambda: LoraRecipe.parse("targets="), ["targets must be module names"]),
], ids=["target-misspelt", "head-missing", "targets-twice", "targets-empty"])
def test_lora_recipes_that_cannot_work_are_refused(make, words) -> None:
    with pytest.raises(ValueError) as info:
        make()
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_sample_to_peft_refusals(world) -> None:
    gen = pg.load_generator(world["ugen"])
    with pytest.raises(ValueError, match="not trained on an adapter collection"):
        sample_to_peft(gen, [world["tmp"] / "never"])
    with pytest.raises(ValueError, match="out_dirs is empty"):
        sample_to_peft(gen, [])
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        sample_to_peft(gen, [world["tmp"] / "never"], peft_config=world["tmp"] / "nowhere.json")
    assert not (world["tmp"] / "never").exists()


# ================================================================= Python API: prompts
@pytest.mark.parametrize("call,exc,words", [
    (lambda: pg.prompts.parse_prompt(None), TypeError, ["prompt must be a string"]),
    (lambda: pg.prompts.parse_prompt(b"odd"), TypeError, ["bytes"]),
    (lambda: pg.prompts.parse_prompt("odd", classes=[]), ValueError, ["class"]),
    (lambda: pg.prompts.parse_prompt("a", classes=["a"]), ValueError, ["class"]),
    (lambda: pg.prompts.parse_prompt("a", classes=["a", "a", "b"]), ValueError, ["'a'"]),
    (lambda: pg.prompts.parse_prompt("blorf " * 1000), ValueError, ["'blorf' in"]),
    (lambda: pg.prompts.parse_prompt("even or " * 4000 + "odd"), ValueError, ["trivial task"]),
], ids=["none", "bytes", "no-classes", "one-class", "duplicate-classes", "huge-unknown",
        "huge-trivial"])
def test_parse_prompt_refusals(call, exc, words) -> None:
    with pytest.raises(exc) as info:
        call()
    for word in words:
        assert word in str(info.value), (word, str(info.value)[:300])


# ================================================================= accelerate misuse
def test_a_half_launched_multi_process_run_is_one_line(world, tmp_path) -> None:
    """WORLD_SIZE set without a launcher's rendezvous (e.g. `python -m paramgen` inside a
    torchrun allocation): accelerate's refusal, as one line and exit 2, before any output."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0",
           "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("MASTER_ADDR", None)
    proc = subprocess.run([sys.executable, "-m", "paramgen", "train", "--ckpts",
                           str(world["mlp"]), "--out", str(tmp_path / "g"), "--align", "none",
                           "--quiet"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "MASTER_ADDR" in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "g" / "config.json").exists()


def test_accelerate_mixed_precision_env_is_ignored_on_cpu(world, tmp_path, monkeypatch,
                                                          capsys) -> None:
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")  # fp16 cannot train on a CPU
    gen = pg.RPG(**RPG_TINY).fit(pg.CheckpointSet.load(world["mlp"]), progress=False)
    assert all(p.dtype == torch.float32 for p in gen.network.parameters())


# ================================================================= issue 24 item 4
def test_collect_tasks_0_leaves_no_folder(tmp_path, capsys) -> None:
    out = tmp_path / "new" / "deeper" / "grid"
    line = _one_line(capsys, ["collect", "--tasks", "0", "--out", str(out), *NOPROG],
                     {"tmp": tmp_path})
    assert "tasks='0'" in line and "selects no task" in line
    assert list(tmp_path.iterdir()) == []  # not the grid, nor the parents made for it


def _snapshot_all(folder: Path) -> dict[str, bytes | None]:
    """Every name under `folder` with its bytes (None for a folder), paramgen's own included."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("grid") / "g"
    assert main(["collect", "--tasks", "2", "--per-task", "1", "--epochs", "3", "--workers", "1",
                 "--out", str(out), *NOPROG]) == 0
    return out


@pytest.mark.parametrize("made_by", ["collect", "CheckpointSet.save"])
def test_collect_with_other_settings_leaves_the_folder_byte_for_byte(made_by, grid, world,
                                                                      capsys) -> None:
    folder = grid if made_by == "collect" else world["mlp"]
    argv = (["collect", "--tasks", "2", "--per-task", "1", "--epochs", "4", "--workers", "1"]
            if made_by == "collect" else ["collect", "--arch", "mlp", "-n", "2"])
    lock = folder / ".paramgen.lock"
    if lock.exists():  # as if another process wrote it last: a refusal must not rewrite it
        lock.write_text("99999")
    before = _snapshot_all(folder)
    line = _one_line(capsys, [*argv, "--out", str(folder), *NOPROG], {})
    assert "made with other settings" in line
    assert _snapshot_all(folder) == before


@pytest.mark.parametrize("n", [2.5, "2", True], ids=["float", "str", "bool"])
def test_sample_n_must_be_a_count(n, world) -> None:
    """Issue 24 item 4c: the sample contract checks `n` at the API boundary."""
    gen = pg.load_generator(world["ugen"])
    with pytest.raises((TypeError, ValueError)) as info:
        gen.sample(n)
    assert re.search(r"\bn\b", str(info.value)), str(info.value)


# ================================================================= folder import (first hour)
def _write_sd(sd):
    return lambda p: save_file(sd, str(p))


def _pickle(obj):
    return lambda p: torch.save(obj, p)


def _numpy_pickle(p):
    import pickle

    import numpy as np

    with open(p, "wb") as fh:
        pickle.dump({"w": np.zeros(3)}, fh)


_SD4, _SD6 = _mlps(1, hidden=4)[0], _mlps(1, hidden=6)[0]
IMPORT_CASES = [
    ("random-bytes-safetensors", {"a.safetensors": bytes(range(256)) * 2}, ["a.safetensors",
                                                                           "unreadable"]),
    ("zero-byte-safetensors", {"a.safetensors": b""}, ["a.safetensors", "unreadable"]),
    ("random-bytes-pt", {"a.pt": bytes(range(256))}, ["a.pt", "weights_only=True"]),
    ("no-model-files", {"a.bin": b"\x00" * 10, "notes.txt": b"hi"}, ["no .safetensors"]),
    ("mixed-shapes", {"a.safetensors": _write_sd(_SD4), "b.safetensors": _write_sd(_SD6)},
     ["b.safetensors", "'net.0.bias' has shape [6]", "[4]"]),
    ("mixed-keys", {"a.safetensors": _write_sd(_SD4),
                    "b.safetensors": _write_sd({"w": torch.zeros(3)})},
     ["b.safetensors", "keys differ", "extra keys 'w'"]),
    ("mixed-dtypes", {"a.safetensors": _write_sd(_SD4),
                      "b.safetensors": _write_sd({k: v.double() for k, v in _SD4.items()})},
     ["b.safetensors", "float64", "float32"]),
    ("empty-state-dict", {"a.safetensors": _write_sd({})}, ["a.safetensors", "no tensors"]),
    ("nan-weights", {"a.safetensors": _write_sd({k: torch.full_like(v, float("nan"))
                                                 for k, v in _SD4.items()})},
     ["a.safetensors", "non-finite"]),
    ("pickle-of-a-list", {"a.pt": _pickle([torch.zeros(3)])}, ["a.pt", "holds a list"]),
    ("pickle-of-strings", {"a.pt": _pickle({"w": "hello"})}, ["a.pt", "not a state dict"]),
    ("pickle-of-numpy", {"a.pt": _numpy_pickle}, ["a.pt", "weights_only=True"]),
]


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's note on a foreign pickle
@pytest.mark.parametrize("files,words", [r[1:] for r in IMPORT_CASES],
                         ids=[r[0] for r in IMPORT_CASES])
def test_folder_import_names_the_bad_file(files, words, tmp_path) -> None:
    for name, content in files.items():
        path = tmp_path / name
        content(path) if callable(content) else path.write_bytes(content)
    with pytest.raises(ValueError) as info:
        pg.CheckpointSet.import_folder(tmp_path, allow_pickle=True)
    for word in words:
        assert word in str(info.value), (word, str(info.value)[:300])


def test_folder_import_unwraps_a_nested_training_checkpoint(tmp_path) -> None:
    torch.save({"state_dict": {"model": _SD4}, "epoch": 3}, tmp_path / "a.pt")
    ckpts = pg.CheckpointSet.import_folder(tmp_path, allow_pickle=True)
    assert len(ckpts) == 1 and all(torch.equal(ckpts[0][k], _SD4[k]) for k in _SD4)


def test_a_huge_prompt_of_unknown_words_gives_a_short_error() -> None:
    """A pasted document: the error shows the start of the prompt, its length, and a dozen of
    its unknown words, not the whole text."""
    def word(i: int) -> str:  # distinct letter-only nonsense words: zqa, zqb, ..., zqba, ...
        letters = ""
        while True:
            i, r = divmod(i, 26)
            letters = chr(97 + r) + letters
            if not i:
                return "zq" + letters

    words = " ".join(word(i) for i in range(30_000))
    with pytest.raises(ValueError) as info:
        pg.prompts.parse_prompt(words)
    first = str(info.value).splitlines()[0]
    assert len(first) < 1_000, len(first)
    assert f"({len(words):,} characters)" in first and "'zqa'" in first
    assert "and 29,988 more" in first
