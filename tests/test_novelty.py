"""Tests of the Zeng et al. evaluation: novelty, parameter distances, the noise and mixture
baselines, their frontiers, the beat count, and what evaluation does with NaN samples and with
files in a samples folder that are not samples of the collection."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from paramgen import cli
from paramgen.checkpoints import CheckpointSet
from paramgen.evaluate import (EvalReport, Frontier, ParamSpace, beats, choose_pairs, evaluate,
                               mixture_baseline, novelty, predictions, score)
from paramgen.io import save_safetensors

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(3, 8, generator=torch.Generator().manual_seed(99)) * 1.2
    y = torch.randint(0, 3, (n,), generator=g)
    return centers[y] + torch.randn(n, 8, generator=g), y


def net() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))


@pytest.fixture(scope="module")
def setup():
    """Two runs x three checkpoints of a small MLP on blobs, and two other-seed 'samples'."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    x_tr, y_tr = blobs(300, 0)
    x_te, y_te = blobs(200, 1)
    sds, runs = [], []
    for seed in range(4):
        torch.manual_seed(seed)
        model = net()
        opt = torch.optim.Adam(model.parameters(), lr=0.05)
        for step in range(40):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x_tr), y_tr).backward()
            opt.step()
            if seed < 2 and step >= 37:  # runs 0 and 1: three checkpoints each
                sds.append({k: v.detach().clone() for k, v in model.state_dict().items()})
                runs.append(seed)
        if seed >= 2:
            sds.append({k: v.detach().clone() for k, v in model.state_dict().items()})
            runs.append(-1)
    yield {"originals": sds[:6], "runs": runs[:6], "samples": sds[6:], "x": x_te, "y": y_te}
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------- frontier

def test_frontier_keeps_the_pareto_staircase():
    f = Frontier.from_points("noise", novelty=[0.0, 0.1, 0.2, 0.2, 0.5, 0.6],
                             score=[0.90, 0.92, 0.85, 0.80, 0.70, 0.50])
    # (0.0, 0.90) is dominated by (0.1, 0.92): more novel and more accurate.
    assert list(zip(f.novelty, f.score)) == [(0.1, 0.92), (0.2, 0.85), (0.5, 0.70), (0.6, 0.50)]
    assert f.best_at(0.0) == 0.92 and f.best_at(0.15) == 0.85 and f.best_at(0.5) == 0.70
    assert f.best_at(0.61) == -math.inf
    assert f.beaten_by(0.3, 0.71) and not f.beaten_by(0.3, 0.70)  # strictly above
    assert not f.beaten_by(0.05, 0.91)
    assert not f.beaten_by(math.nan, 1.0)


def test_beats_needs_every_frontier_and_the_margin():
    noise = Frontier.from_points("noise", [0.0, 0.3], [0.90, 0.60])
    mix = Frontier.from_points("mixture", [0.1, 0.2], [0.89, 0.86])
    won = beats(novelty=[0.25, 0.15, 0.25, 0.5],
                scores=[0.87, 0.88, 0.86, 0.85], frontiers=[noise, mix], reference_mean=0.90)
    # 0: above both frontiers (noise 0.60; no mixture model is that novel) but 0.87 is more than
    # 2 points below 0.90. 1: above mixture (0.86 at novelty >= 0.15) and noise (0.60), 0.88 ok.
    # 2 and 3: above both frontiers, below the margin.
    assert won == [False, True, False, False]
    assert beats([0.25], [0.88], [noise, mix], 0.90) == [True]  # exactly at the margin counts


def test_novelty_is_one_minus_similarity():
    assert novelty([1.0, 0.25]) == [0.0, 0.75]
    assert math.isnan(novelty([math.nan])[0])


# ----------------------------------------------------------------------------- distances

def test_param_space_distances_by_hand():
    a = {"w": torch.tensor([3.0, 4.0]), "n": torch.tensor(7)}  # norm 5; int buffer ignored
    b = {"w": torch.tensor([0.0, 0.0]), "n": torch.tensor(1)}
    space = ParamSpace([a, b])
    assert space.keys == ["w"] and space.scale == pytest.approx(2.5)
    assert space.nearest_among_originals() == pytest.approx([2.0, 2.0])  # 5 / 2.5, self excluded
    c = {"w": torch.tensor([3.0, 3.0]), "n": torch.tensor(0)}
    assert space.nearest([c]) == pytest.approx([1.0 / 2.5])
    assert math.isnan(ParamSpace([a]).nearest_among_originals()[0])


# ----------------------------------------------------------------------------- baselines

def test_choose_pairs_mixes_within_and_across_runs():
    runs = [0, 0, 0, 1, 1, 1]
    pairs = choose_pairs(runs, 6, count=6, seed=0)
    assert len(pairs) == len(set(pairs)) == 6
    same = [p for p in pairs if runs[p[0]] == runs[p[1]]]
    assert len(same) == 3
    assert pairs == choose_pairs(runs, 6, count=6, seed=0)
    assert choose_pairs(None, 1) == [] and len(choose_pairs(None, 4, count=100)) == 6
    # Only 6 same-run pairs exist with runs [0, 0, 0, 1, 1, 1]: the rest come from across.
    assert len(choose_pairs(runs, 6, count=15)) == 15


def test_mixture_alpha_zero_reproduces_the_first_parent(setup):
    model = net()
    x, y = setup["x"], setup["y"]
    orig = setup["originals"]
    base = mixture_baseline(orig, model, x, y, alphas=[0.0, 0.5], pairs=4, runs=setup["runs"])
    assert len(base.pairs) == 4 and base.alphas == [0.0, 0.5]
    own = [float(v) for v in score(predictions(orig, model, x), y)]
    assert base.scores[0] == pytest.approx([own[i] for i, _ in base.pairs])
    assert base.novelty[0] == pytest.approx([0.0] * 4)
    with pytest.raises(ValueError, match="alpha 1.5"):
        mixture_baseline(orig, model, x, y, alphas=[1.5])


def test_report_counts_models_beating_both(setup, tmp_path):
    orig = setup["originals"]
    # Copies of the originals are not novel: they cannot beat noise at novelty 0.
    rep = evaluate(orig[:2] + setup["samples"], orig, data=(setup["x"], setup["y"]), model=net(),
                   noise_scales=[0.01, 0.3, 1.0], mix_pairs=6, out_dir=tmp_path / "rep")
    assert rep.generated_novelty[:2] == [0.0, 0.0] and rep.generated_distance[:2] == [0.0, 0.0]
    assert rep.beats_both[:2] == [False, False]
    assert len(rep.frontiers) == 2 and rep.mixture is not None
    # The count agrees with the definition applied by hand.
    by_hand = [all(s > f.best_at(v) for f in rep.frontiers)
               and s >= rep.original_summary["mean"] - 0.02
               for v, s in zip(rep.generated_novelty, rep.generated_scores)]
    assert rep.beats_both == by_hand
    assert rep.beat_line().startswith(f"{sum(by_hand)} of 4 generated models beat the noise "
                                      "and mixture baselines")
    js = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert js["beat_both_count"] == sum(by_hand)
    assert len(js["mixture_baseline"]["pairs"]) == 6
    assert len(js["original"]["nn_distance"]) == 6
    assert (tmp_path / "rep" / "novelty.png").read_bytes().startswith(PNG_MAGIC)
    assert rep.beat_line() in (tmp_path / "rep" / "report.md").read_text()


def test_report_without_baselines_beats_nothing(setup):
    rep = evaluate(setup["samples"], setup["originals"], data=(setup["x"], setup["y"]),
                   model=net(), noise_scales=[], mix_alphas=[])
    assert rep.frontiers == [] and rep.beats_both == [False, False]
    assert rep.noise is None and rep.mixture is None


def test_frontier_beat_with_made_up_numbers():
    """A model above both baselines and near the originals' mean is counted; one below is not."""
    from paramgen.evaluation.baselines import MixtureBaseline, NoiseBaseline

    noise = NoiseBaseline(scores=[[0.90, 0.90], [0.70, 0.60]], similarities=[[1.0, 1.0],
                          [0.5, 0.4]], scales=[0.01, 0.5])
    mix = MixtureBaseline(scores=[[0.85]], similarities=[[0.7]], alphas=[0.5], pairs=[(0, 1)])
    rep = EvalReport(metric="accuracy", task=None, info={}, n_test=10,
                     original_names=["a", "b"], generated_names=["g0", "g1", "g2"],
                     original_scores=[0.9, 0.9], generated_scores=[0.89, 0.80, 0.89],
                     original_similarity=[0.9, 0.9],
                     generated_similarity=[0.6, 0.6, 1.0], noise=noise, mixture=mix)
    # g0: novelty 0.4; noise reaches at most 0.70 that novel, no mixture is: 0.89 beats both
    # and is within 2 points of 0.90. g1: above both frontiers but 10 points below the
    # originals. g2: novelty 0, where noise at scale 0.01 reaches 0.90 > 0.89.
    assert rep.beats_both == [True, False, False]


# ----------------------------------------------------------------------------- bad samples

def test_nonfinite_sample_is_reported_and_left_out(setup, tmp_path):
    bad = {k: v.clone() for k, v in setup["samples"][0].items()}
    bad["0.weight"][0, 0] = float("nan")
    rep = evaluate([bad, setup["samples"][1]], setup["originals"],
                   data=(setup["x"], setup["y"]), model=net(), noise_scales=[0.1],
                   out_dir=tmp_path / "rep")
    assert rep.nonfinite == {"sample_000": ["0.weight"]}
    assert rep.generated_names == ["sample_001"] and len(rep.generated_scores) == 1
    assert len(rep.pca["generated"]) == 1 and len(rep.generated_distance) == 1
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "1 generated model(s) hold NaN/inf values" in md and "sample_000 (0.weight)" in md

    # Every sample diverged: the report is still written, with no generated numbers.
    rep = evaluate([bad], setup["originals"], data=(setup["x"], setup["y"]), model=net(),
                   noise_scales=[0.1], out_dir=tmp_path / "all_bad")
    assert rep.generated_scores == [] and rep.lmc is None and rep.pca is None
    assert rep.beat_line().startswith("0 of 0 generated models")
    assert (tmp_path / "all_bad" / "novelty.png").is_file()


def test_samples_folder_skips_files_of_other_models(setup, tmp_path, monkeypatch, capsys):
    import paramgen.data

    # The zoo mlp has keys net.0.* / net.2.*: state dicts of nn.Sequential need renaming.
    renamed = [{f"net.{k}": v for k, v in sd.items()} for sd in setup["originals"]]
    info = {"arch": "mlp", "in_shape": [8], "num_classes": 3, "data": "blobs",
            "model_kwargs": {"hidden": [16]}}
    CheckpointSet.from_state_dicts(renamed, runs=[max(r, 0) for r in setup["runs"]],
                                   info=info).save(tmp_path / "ckpts")
    samples = tmp_path / "samples"
    for i, sd in enumerate(setup["samples"]):
        save_safetensors(samples / f"sample_{i:03d}.safetensors",
                         {f"net.{k}": v for k, v in sd.items()})
    save_safetensors(samples / "leftover.safetensors", {"other.weight": torch.zeros(2, 2)})
    (samples / "torn.safetensors").write_bytes(b"not a safetensors file")
    data = (*blobs(300, 0), *blobs(200, 1))
    monkeypatch.setattr(paramgen.data, "load", lambda name, *a, **k: data)
    rep = evaluate(samples, tmp_path / "ckpts", noise_scales=[0.1], mix_pairs=4)
    assert rep.generated_names == ["sample_000.safetensors", "sample_001.safetensors"]
    assert sorted(rep.skipped) == ["leftover.safetensors", "torn.safetensors"]
    assert "other.weight" in rep.skipped["leftover.safetensors"] or \
        "net.0.weight" in rep.skipped["leftover.safetensors"]

    assert cli.main(["eval", "--samples", str(samples), "--ckpts", str(tmp_path / "ckpts"),
                     "--noise-scales", "0.1", "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "2 file(s) in the samples folder do not fit" in out and "leftover.safetensors" in out
    assert "of 2 generated models beat" in out
    assert "mixtures of two originals" in out and "mean NN distance" in out
