"""benchmarks/gpu_check.py in its reduced (CPU) mode: the CPU parts run, each GPU part is skipped
by name with the reason."""

from __future__ import annotations

import json

import pytest
import torch

from repo_scripts import load_script

SCRIPT = "benchmarks/gpu_check.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU mode's skip lines")
def test_gpu_check_on_cpu_skips_gpu_parts_by_name(tmp_path, capsys):
    rep = load_script(SCRIPT).main(["--reduced", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    status = {name: part["status"] for name, part in rep.parts.items()}
    assert status == {"env": "ok", "install": "skipped", "kernels": "skipped",
                      "bf16-fit": "ok", "vit-base": "ok", "accelerate": "skipped"}
    assert "kernels: skipped (no CUDA device: selective_scan_fn and causal_conv1d_fn" in out
    assert "accelerate: skipped (0 GPU(s): the 2-process launch needs 2 or more" in out
    assert "install: skipped (not asked" in out
    assert "bf16-fit: ok reduced on cpu" in out and "finite, shapes right" in out
    assert "vit-base: ok ViT 1 block dim 32 (reduced)" in out
    assert "summary: 3 ok, skipped ['install', 'kernels', 'accelerate'], failed []" in out
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["vit-base"]["samples"][0]["s"] > 0


def test_install_without_cuda_is_skipped_by_name(capsys):
    script = load_script(SCRIPT)
    rep = script.Report()
    script.part_install(rep, wanted=True, cuda=False)
    assert rep.parts["install"]["status"] == "skipped"
    assert "install: skipped (no CUDA device: mamba-ssm and causal-conv1d build CUDA kernels" \
        in capsys.readouterr().out


def test_a_failing_part_fails_alone():
    script = load_script(SCRIPT)
    rep = script.Report()
    rep.run("boom", lambda: 1 / 0)
    assert rep.parts["boom"]["status"] == "FAILED"
    assert "ZeroDivisionError" in rep.parts["boom"]["text"]
