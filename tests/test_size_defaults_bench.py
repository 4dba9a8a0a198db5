"""benchmarks/size_defaults.py's per-tensor distance analysis (`layer_errors`)."""

from __future__ import annotations

import types

import torch
from repo_scripts import load_script


def test_layer_errors_finds_the_nearest_checkpoint_and_measures_each_tensor_against_it():
    bench = load_script("benchmarks/size_defaults.py")
    g = torch.Generator().manual_seed(0)
    shapes = {"a.weight": (6, 4), "a.bias": (6,), "b.weight": (3, 6)}
    base = {k: torch.randn(*s, generator=g) for k, s in shapes.items()}
    step = {k: torch.randn(*s, generator=g) for k, s in shapes.items()}
    # Checkpoints along a line at uneven steps: each one's nearest other is known.
    at = [0.0, 1.0, 3.0, 7.0]
    sds = [{k: base[k] + t * step[k] for k in shapes} for t in at]
    std = {"a.weight": 0.5, "a.bias": 2.0, "b.weight": 1.0}
    tok = types.SimpleNamespace(layers=[types.SimpleNamespace(key=k, std=std[k]) for k in shapes])
    # One sample beside checkpoint 2, off the line in b.weight only.
    off = torch.zeros(3, 6)
    off[0, 0] = 0.3
    sample = {k: sds[2][k] + (off if k == "b.weight" else 0) for k in shapes}
    rows = {k: (e, s) for k, e, s in bench.layer_errors([sample], sds, tok)}

    def rms(k, u, v):
        return float((u[k] - v[k]).pow(2).mean().sqrt()) / std[k]

    nearest_other = [1, 0, 1, 2]  # consecutive gaps 1, 2, 4
    for k in shapes:
        want = sum(rms(k, sds[i], sds[j]) for i, j in enumerate(nearest_other)) / len(sds)
        assert abs(rows[k][1] - want) < 1e-5
    assert rows["a.weight"][0] < 1e-6 and rows["a.bias"][0] < 1e-6
    assert abs(rows["b.weight"][0] - 0.3 / 18 ** 0.5) < 1e-6
    # Worst tensor (error against spread) first.
    assert bench.layer_errors([sample], sds, tok)[0][0] == "b.weight"
