"""benchmarks/unseen_tasks.py's kernel-interpolation reference row."""

from __future__ import annotations

import torch
from repo_scripts import load_script


def test_kernel_interpolation_recovers_a_smooth_map_from_bits_and_ignores_unseen_tasks():
    bench = load_script("benchmarks/unseen_tasks.py")
    g = torch.Generator().manual_seed(0)
    tasks = [format(i, "06b") for i in range(1, 63)]
    order = torch.randperm(len(tasks), generator=g).tolist()
    seen, unseen = [tasks[i] for i in order[:50]], [tasks[i] for i in order[50:]]
    w = torch.randn(6, 40, generator=g, dtype=torch.float64)

    def model(t):  # a smooth function of the +-1 bits
        b = torch.tensor([2.0 * int(c) - 1 for c in t], dtype=torch.float64)
        return torch.tanh(b @ w / 3)

    predicted, setting = bench.kernel_interpolation({t: model(t) for t in seen}, unseen)
    truth = torch.stack([model(t) for t in unseen])
    mean = torch.stack([model(t) for t in seen]).mean(0)
    assert predicted.shape == truth.shape
    assert "length scale" in setting and "ridge" in setting
    # far closer than the seen mean, the prediction a condition-blind model makes
    assert (predicted - truth).pow(2).mean() < 0.1 * (mean - truth).pow(2).mean()


def test_one_basin_scores_a_task_with_its_neighbours_model_and_their_midpoint():
    bench = load_script("benchmarks/unseen_tasks.py")
    tasks = ["0011", "0111", "1100", "1000"]
    grid = [{"w": torch.tensor([float(i)]), "n": torch.tensor([i])} for i in range(len(tasks))]
    models = {t: [i] for i, t in enumerate(tasks)}
    scored = []

    def score(sd, bits):  # best at the task's own index, worse linearly away from it
        scored.append((bits, float(sd["w"])))
        assert sd["n"].dtype == torch.long  # integer tensors are kept, not averaged
        return 1.0 - abs(float(sd["w"]) - tasks.index(bits)) / 4

    n, own, other, mid = bench.one_basin(grid, tasks, tasks, models, score, pairs=3)
    # 0011 <-> 0111 and 1100 <-> 1000 are one bit apart: every task has a neighbour, three asked
    assert n == 3
    assert own == 1.0 and other == 0.75 and mid == 0.875
    assert ("0011", 0.5) in scored  # the midpoint of models 0 and 1
    assert bench.one_basin(grid, ["0011", "1100"], ["0011", "1100"], models, score, 3)[0] == 0
