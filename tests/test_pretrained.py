"""The generators that ship with paramgen (src/paramgen/pretrained, built by
scripts/build_pretrained.py): found by name, offline, generating working models and adapters."""

import hashlib
import json
import sys
from importlib import resources
from pathlib import Path

import pytest
from safetensors.torch import load_file

import paramgen as pg
from paramgen import pretrained
from paramgen.cli import main
from paramgen.data import load, relabel
from paramgen.evaluation.core import build_model, load_into
from paramgen.metrics import balanced_accuracy, predict

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - tomllib is 3.11+; pyproject is then only read by setuptools
    tomllib = None

REPO = Path(__file__).resolve().parent.parent
ADAPTERS = "digits-lora"
shipped_adapters = pytest.mark.skipif(ADAPTERS not in pretrained.names(),
                                      reason="digits-lora is not shipped in this checkout")


def _seen_task(name: str) -> str:
    split = json.loads((pretrained.folder(name) / "split.json").read_text())
    return split["seen"][0]


def _score(sd: dict, info: dict, bits: str) -> float:
    _, _, x, y = load(info["data"])
    return balanced_accuracy(predict(load_into(build_model(info), sd), x), relabel(y, bits))


def test_digits_tasks_is_shipped_with_its_files_and_checksums():
    assert "digits-tasks" in pretrained.names()
    for name in pretrained.names():
        where = resources.files("paramgen.pretrained") / name
        quality = pretrained.quality(name)
        for rel, entry in quality["files"].items():
            data = (where / rel).read_bytes()
            assert len(data) == entry["bytes"], rel
            assert hashlib.sha256(data).hexdigest() == entry["sha256"], rel
        assert pretrained.size_bytes(name) < 10_000_000  # package data stays small
        for part in ("seen", "unseen"):
            assert quality[part]["generated_mean"] > 0.8, (name, part)


@pytest.mark.skipif(tomllib is None, reason="reading pyproject.toml needs tomllib (3.11+)")
def test_package_data_patterns_cover_every_shipped_file():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["paramgen.pretrained"]
    root = pretrained.root()
    covered = {p for pattern in patterns for p in root.glob(pattern) if p.is_file()}
    for name in pretrained.names():
        files = {p for p in (root / name).rglob("*") if p.is_file()}
        assert files and files <= covered, sorted(map(str, files - covered))


@pytest.mark.slow
def test_the_wheel_carries_every_shipped_file(tmp_path):
    import shutil
    import subprocess
    import zipfile

    src = tmp_path / "src"  # a copy, so the build leaves nothing in the checkout
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns("build", "runs", ".git", "*.egg-info",
                                                             "__pycache__", ".pytest_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps",
                    "--no-build-isolation", "-q", "-w", str(tmp_path / "dist")], check=True)
    wheel = next((tmp_path / "dist").glob("paramgen-*.whl"))
    listed = set(zipfile.ZipFile(wheel).namelist())
    for name in pretrained.names():
        for rel in pretrained.quality(name)["files"]:
            assert f"paramgen/pretrained/{name}/{rel}" in listed
        assert f"paramgen/pretrained/{name}/quality.json" in listed


def test_load_by_name_generates_a_working_model_for_a_seen_task():
    gen = pg.load_generator("digits-tasks")
    info = gen.collection_info
    assert info["arch"] == "mlp" and info["data"] == "digits"
    assert info["in_shape"] == [1, 8, 8] and info["class_names"] == [str(d) for d in range(10)]
    bits = _seen_task("digits-tasks")
    sd = gen.sample(1, condition=bits, seed=0)[0]
    assert _score(sd, info, bits) > 0.8


def test_generate_from_a_prompt_on_the_command_line(tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    assert main(["generate", "--gen", "digits-tasks", "--prompt",
                 "a model that spots even digits", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "1010101010" in printed and "balanced accuracy" in printed
    info = pg.load_generator("digits-tasks").collection_info
    assert _score(load_file(str(out)), info, "1010101010") > 0.8


def test_generators_command_lists_each_with_its_quality(capsys):
    assert main(["generators"]) == 0
    printed = capsys.readouterr().out
    for name in pretrained.names():
        assert name in printed
    assert "unseen tasks" in printed and "MB" in printed
    assert main(["generators", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["name"] for r in rows] == pretrained.names()
    assert all(r["quality"]["unseen"]["tasks"] > 0 for r in rows)


def test_unknown_name_lists_the_shipped_ones(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="digits-tasks") as err:
        pg.load_generator("digits-taks")
    assert "digits-taks" in str(err.value)
    assert main(["generate", "--gen", "digits-taks", "--task", "0101010101",
                 "--out", "m.safetensors"]) == 2
    assert "shipped: " in capsys.readouterr().err
    assert not (tmp_path / "m.safetensors").exists()


def test_a_path_wins_over_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "digits-tasks").mkdir()  # a folder of that name here, not a generator
    with pytest.raises(FileNotFoundError, match="is not a saved generator"):
        pg.load_generator("digits-tasks")
    # and the shipped folder by its path loads as any folder does
    assert pg.load_generator(pretrained.folder("digits-tasks")).method == "rpg"


@shipped_adapters
def test_adapter_generator_writes_a_peft_folder_that_loads_onto_the_shipped_base(tmp_path,
                                                                                 capsys):
    pytest.importorskip("peft")
    from paramgen.adapters.evaluate import score_adapter

    gen = pg.load_generator(ADAPTERS)
    base = Path(gen.collection_info["base_dir"])
    assert base == pretrained.folder(ADAPTERS) / "base" and base.is_dir()
    bits = _seen_task(ADAPTERS)
    out = tmp_path / "adapter"
    assert main(["generate", "--gen", ADAPTERS, "--task", bits, "--out", str(out)]) == 0
    assert "loaded through peft" in capsys.readouterr().out
    assert (out / "adapter_config.json").is_file()
    assert (out / "adapter_model.safetensors").is_file()
    assert score_adapter(base, out, bits, "digits") > 0.8
