"""Tests of paramgen.evaluate: similarity, summaries, baselines, LMC, PCA, reports and the CLI.

Everything runs on tiny made-up data (three Gaussian blobs in 8-D) and small MLPs trained for a
few full-batch steps, so the whole file takes seconds and needs no dataset on disk.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import paramgen.data
from paramgen import cli, metrics
from paramgen.checkpoints import CheckpointSet
from paramgen.evaluate import (EvalReport, ModelSpec, add_noise, check_compatible,
                               comparison_table, evaluate, finetune_curves, interpolate, iou,
                               iou_matrix, largest_float_key, lmc, load_samples, max_similarity,
                               noise_baseline, pca, predictions, score, summary, wrong_mask,
                               write_report)
from paramgen.io import save_safetensors

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
IN, CLASSES = 8, 3


def blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three overlapping Gaussian blobs: learnable, but not perfectly, so models make mistakes."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(CLASSES, IN, generator=torch.Generator().manual_seed(99)) * 1.2
    y = torch.randint(0, CLASSES, (n,), generator=g)
    return centers[y] + torch.randn(n, IN, generator=g), y


class Tiny(nn.Module):
    """Stand-in network with a BatchNorm, so state dicts carry an integer buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.bn, self.fc2 = nn.Linear(IN, 16), nn.BatchNorm1d(16), nn.Linear(16, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.bn(self.fc1(x))))


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, seed: int) -> dict:
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These tensors are tiny: on a shared 2-core machine extra intra-op threads only contend
    (measured ~6x slower under load), so run single-threaded and restore the setting after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def setup(one_thread):
    """Trained originals and 'generated' models (other seeds) of the Tiny net, plus data."""
    x_tr, y_tr = blobs(300, 0)
    x_te, y_te = blobs(200, 1)
    sds = []
    for seed in range(6):
        torch.manual_seed(seed)
        sds.append(train(Tiny(), x_tr, y_tr, 15 + 3 * seed, seed))
    return {"originals": sds[:4], "generated": sds[4:], "x": x_te, "y": y_te,
            "data": (x_tr, y_tr, x_te, y_te)}


# ----------------------------------------------------------------------------- similarity

def test_iou_hand_made_cases():
    a = torch.tensor([True, True, False, False])
    assert iou(a, a) == 1.0
    assert iou(a, ~a) == 0.0
    assert iou(torch.zeros(4, dtype=torch.bool), torch.zeros(4, dtype=torch.bool)) == 1.0
    assert iou(a, torch.tensor([False, True, True, False])) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="shape"):
        iou(a, torch.tensor([True]))


def test_iou_matrix_matches_pairwise_iou():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(5, 30, generator=g) < 0.3
    b = torch.rand(4, 30, generator=g) < 0.3
    b[0] = False
    m = iou_matrix(a, b)
    for i in range(5):
        for j in range(4):
            assert m[i, j].item() == pytest.approx(iou(a[i], b[j]))


def test_max_similarity_excludes_self():
    y = torch.zeros(6, dtype=torch.long)
    preds = torch.tensor([[1, 1, 0, 0, 0, 0],    # wrong {0,1}
                          [1, 1, 0, 0, 0, 0],    # wrong {0,1}: identical to model 0
                          [0, 1, 1, 0, 0, 0]])   # wrong {1,2}
    # Without exclusion every model finds itself: similarity 1.
    assert max_similarity(preds, preds, y=y) == [1.0, 1.0, 1.0]
    # With exclusion model 0 and 1 still match each other; model 2 only overlaps by 1/3.
    assert max_similarity(preds, preds, exclude_self=True, y=y) == pytest.approx([1, 1, 1 / 3])
    # One original has nobody else to compare to.
    assert math.isnan(max_similarity(preds[:1], preds[:1], exclude_self=True, y=y)[0])
    # Boolean masks work without labels; class predictions without labels do not.
    masks = wrong_mask(preds, y)
    assert max_similarity(masks, masks, exclude_self=True) == pytest.approx([1, 1, 1 / 3])
    with pytest.raises(ValueError, match="boolean"):
        max_similarity(preds, preds)
    with pytest.raises(ValueError, match="itself"):
        max_similarity(masks[:2], masks, exclude_self=True)


# ----------------------------------------------------------------------------- summaries

def test_summary_numbers():
    s = summary([0.9, 0.6, 0.8, 0.7])
    assert s["best"] == pytest.approx(0.9)
    assert s["mean"] == pytest.approx(0.75)
    assert s["median"] == pytest.approx(0.75)
    assert s["min"] == pytest.approx(0.6)
    assert s["std"] == pytest.approx(math.sqrt(0.0125))  # population std
    assert summary([0.5])["std"] == 0.0
    assert all(math.isnan(v) for v in summary([]).values())


def test_comparison_table_layout():
    t = comparison_table([0.9, 0.8], [0.85, 0.95, 0.75])
    text, md = t.text(), t.markdown()
    lines = text.splitlines()
    assert lines[1].split()[:3] == ["models", "n", "best"]
    assert lines[3].split() == ["original", "2", "90.0", "85.0", "85.0", "80.0", "5.0"]
    assert lines[4].split() == ["generated", "3", "95.0", "85.0", "85.0", "75.0", "8.2"]
    assert "| original | 2 | 90.0 | 85.0 | 85.0 | 80.0 | 5.0 |" in md
    assert "|:---|---:|---:|---:|---:|---:|---:|" in md  # labels left, numbers right


def test_score_matches_metrics_module(setup):
    preds = predictions(setup["originals"], Tiny(), setup["x"])
    assert preds.shape == (4, len(setup["y"]))
    for name, fn in (("accuracy", metrics.accuracy),
                     ("balanced_accuracy", metrics.balanced_accuracy)):
        scores = score(preds, setup["y"], name)
        for row, s in zip(preds, scores):
            assert float(s) == pytest.approx(fn(row, setup["y"]))
    with pytest.raises(ValueError, match="metric"):
        score(preds, setup["y"], "f1")


def test_predictions_strict_loading_names_the_source(setup):
    bad = dict(setup["originals"][0])
    bad.pop("fc2.bias")
    with pytest.raises(ValueError, match="broken.safetensors"):
        predictions([bad], Tiny(), setup["x"], names=["broken.safetensors"])


# ----------------------------------------------------------------------------- noise, LMC, PCA

def test_noise_scale_zero_is_identical_and_similarity_one(setup):
    model = Tiny()
    sd = setup["originals"][0]
    assert all(torch.equal(a, b) for a, b in zip(sd.values(), add_noise(sd, 0.0).values()))
    base = noise_baseline(setup["originals"], model, setup["x"], setup["y"], scales=[0.0, 0.5],
                          per_scale=None)
    orig_scores = score(predictions(setup["originals"], model, setup["x"]), setup["y"])
    assert base.similarities[0] == [1.0] * 4
    assert base.scores[0] == pytest.approx([float(s) for s in orig_scores])
    assert len(base.scores[1]) == 4
    assert sum(base.similarities[1]) < 4.0  # heavy noise changes which examples are wrong
    assert "noise scale" in base.table().text()


def test_add_noise_is_relative_and_skips_integer_buffers():
    g = torch.Generator().manual_seed(0)
    sd = {"w": torch.randn(200, 50, generator=g) * 10, "b": torch.full((5,), 2.0),
          "bn.num_batches_tracked": torch.tensor(7)}
    noisy = add_noise(sd, 0.1, torch.Generator().manual_seed(1))
    ratio = float((noisy["w"] - sd["w"]).std() / sd["w"].std())
    assert ratio == pytest.approx(0.1, rel=0.05)
    assert not torch.equal(noisy["b"], sd["b"])  # constant tensor: noise relative to its RMS
    assert torch.equal(noisy["bn.num_batches_tracked"], sd["bn.num_batches_tracked"])
    only_w = add_noise(sd, 0.1, keys=["w"])
    assert torch.equal(only_w["b"], sd["b"])
    with pytest.raises(ValueError, match="noise scale"):
        add_noise(sd, -1.0)


def test_lmc_endpoints_equal_model_scores(setup):
    model = Tiny()
    a, b = setup["originals"][0], setup["generated"][0]
    curve = lmc(a, b, model, setup["x"], setup["y"], points=5)
    ends = score(predictions([a, b], model, setup["x"]), setup["y"])
    assert curve["alphas"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert curve["scores"][0] == pytest.approx(float(ends[0]))
    assert curve["scores"][-1] == pytest.approx(float(ends[1]))
    expected = max(0.0, (curve["scores"][0] + curve["scores"][-1]) / 2 - min(curve["scores"]))
    assert curve["barrier"] == pytest.approx(expected)
    mid = interpolate(a, b, 0.5)
    assert torch.allclose(mid["fc1.weight"], (a["fc1.weight"] + b["fc1.weight"]) / 2)
    assert torch.equal(mid["bn.num_batches_tracked"], a["bn.num_batches_tracked"])
    with pytest.raises(ValueError, match="endpoints"):
        lmc(a, b, model, setup["x"], setup["y"], points=1)


def test_pca_shapes(setup):
    out = pca(setup["originals"], setup["generated"])
    assert out["key"] == largest_float_key(setup["originals"][0]) == "fc1.weight"
    assert torch.tensor(out["original"]).shape == (4, 2)
    assert torch.tensor(out["generated"]).shape == (2, 2)
    assert 0 < sum(out["explained"]) <= 1 + 1e-9
    one = pca(setup["originals"][:1], [], key="fc2.bias")
    assert one["original"] == [[0.0, 0.0]] and one["generated"] == []
    with pytest.raises(ValueError, match="nope"):
        pca(setup["originals"], [], key="nope")


# ----------------------------------------------------------------------------- evaluate / report

def test_evaluate_and_write_report(setup, tmp_path):
    report = evaluate(setup["generated"], setup["originals"], data=(setup["x"], setup["y"]),
                      model=Tiny(), noise_scales=[0.01, 0.3], noise_per_scale=2, lmc_points=3,
                      out_dir=tmp_path / "rep")
    assert isinstance(report, EvalReport)
    assert len(report.original_scores) == 4 and len(report.generated_scores) == 2
    assert all(0 <= s <= 1 for s in report.original_similarity + report.generated_similarity)
    assert report.lmc["a"].startswith("original #")
    assert report.lmc["b"] in ("sample_000", "sample_001")
    for name in ("novelty.png", "pca.png", "lmc.png"):
        data = (tmp_path / "rep" / name).read_bytes()
        assert len(data) > 1000 and data.startswith(PNG_MAGIC)
    md = (tmp_path / "rep" / "report.md").read_text()
    for section in ("## Performance", "## Novelty against the baselines", "## Similarity",
                    "noise-added originals", "mixtures of two originals",
                    "## Linear mode connectivity", "## PCA", "novelty.png", "beat the noise"):
        assert section in md
    js = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert js["generated"]["summary"]["best"] == pytest.approx(max(report.generated_scores))
    assert js["noise_baseline"]["scales"] == [0.01, 0.3]
    assert report.table().rows[0][0] == "original"

    # No plots: markdown and JSON only, and no image links to missing files.
    write_report(report, tmp_path / "plain", plots=False)
    assert sorted(p.name for p in (tmp_path / "plain").iterdir()) == ["report.json", "report.md"]
    assert ".png" not in (tmp_path / "plain" / "report.md").read_text()


def test_evaluate_task_grid_selects_the_task(setup):
    sds = setup["originals"]
    grid = CheckpointSet.from_state_dicts(
        sds, provenance=[{"task": t} for t in ("011", "011", "101", "101")],
        info={"arch": "tiny", "in_shape": [IN], "num_classes": CLASSES,
              "metric": "balanced_accuracy"})
    with pytest.raises(ValueError, match="task grid of 2 tasks"):
        evaluate(setup["generated"], grid, data=(setup["x"], setup["y"]), model=Tiny(),
                 noise_scales=[])
    with pytest.raises(ValueError, match="'110'"):
        evaluate(setup["generated"], grid, data=(setup["x"], setup["y"]), model=Tiny(),
                 task="110", noise_scales=[])
    rep = evaluate(setup["generated"], grid, data=(setup["x"], setup["y"]), model=Tiny(),
                   task="101", noise_scales=[])
    assert rep.original_names == ["original #2", "original #3"]
    assert rep.metric == "balanced_accuracy" and rep.task == "101" and rep.noise is None


def test_check_compatible_names_file_and_key(setup):
    ref = setup["originals"][0]
    missing = {k: v for k, v in ref.items() if k != "fc2.weight"}
    with pytest.raises(ValueError, match=r"s1\.safetensors: key 'fc2\.weight'.*missing"):
        check_compatible([ref, missing], ref, ["s0.safetensors", "s1.safetensors"])
    wrong = dict(ref, **{"fc1.bias": torch.zeros(3)})
    with pytest.raises(ValueError, match=r"s0\.safetensors: key 'fc1\.bias' has shape \(3,\)"):
        check_compatible([wrong], ref, ["s0.safetensors"])
    extra = dict(ref, junk=torch.zeros(1))
    with pytest.raises(ValueError, match="'junk' is not in"):
        check_compatible([extra], ref, ["s0.safetensors"])


def test_model_spec_errors_name_the_key():
    with pytest.raises(ValueError, match="'in_shape'"):
        ModelSpec.from_info({"arch": "mlp", "num_classes": 3}, "m.json")
    with pytest.raises(ValueError, match="metric"):
        ModelSpec.from_info({"arch": "mlp", "in_shape": [8], "num_classes": 3, "metric": "f1"})
    spec = ModelSpec.from_info({"arch": "mlp", "in_shape": [8], "num_classes": 3,
                                "model_kwargs": {"hidden": [4]}})
    assert spec.in_shape == (8,) and spec.model_kwargs == {"hidden": [4]}


def test_finetune_curves_table(setup):
    table = finetune_curves({"generated": setup["generated"][1], "random init": None},
                            model_fn=Tiny, data=setup["data"], epochs=2, lr=0.01, batch_size=100)
    assert table.epochs == [0, 1, 2]
    assert set(table.curves) == {"generated", "random init"}
    assert all(len(v) == 3 for v in table.curves.values())
    start = score(predictions([setup["generated"][1]], Tiny(), setup["x"]), setup["y"])
    assert table.curves["generated"][0] == pytest.approx(float(start[0]))
    assert "epoch-2 (%)" in table.table().text()
    assert table.to_markdown().startswith("**test accuracy")


# ----------------------------------------------------------------------------- command line

@pytest.fixture()
def collection(tmp_path, monkeypatch):
    """A zoo-MLP collection on fake 'blobs' data, with its samples folder."""
    x_tr, y_tr = blobs(300, 0)
    x_te, y_te = blobs(200, 1)
    monkeypatch.setattr(paramgen.data, "load", lambda name, *a, **k: (x_tr, y_tr, x_te, y_te))
    from paramgen import zoo

    info = {"arch": "mlp", "data": "blobs", "in_shape": [IN], "num_classes": CLASSES,
            "metric": "accuracy", "model_kwargs": {"hidden": [8]}}
    sds = [train(zoo.create("mlp", (IN,), CLASSES, seed=s, hidden=[8]), x_tr, y_tr, 20, s)
           for s in range(5)]
    CheckpointSet.from_state_dicts(sds[:3], info=info).save(tmp_path / "ckpts")
    for i, sd in enumerate(sds[3:]):
        save_safetensors(tmp_path / "samples" / f"s{i}.safetensors", sd)
    return tmp_path


def test_cli_eval_writes_report(collection, capsys):
    rc = cli.main(["eval", "--samples", str(collection / "samples"), "--ckpts",
                   str(collection / "ckpts"), "--noise-scales", "0.01", "0.5",
                   "--finetune-epochs", "1"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "original" in out and "generated" in out and "median (%)" in out
    assert "mean max-similarity" in out and "noise scale" in out and "epoch-1 (%)" in out
    rep = collection / "samples" / "report"
    assert f"report: {rep / 'report.md'}" in out
    assert (rep / "novelty.png").read_bytes().startswith(PNG_MAGIC)
    assert "generated models beat the noise and mixture baselines" in out
    names, sds = load_samples(collection / "samples")
    assert names == ["s0.safetensors", "s1.safetensors"] and len(sds) == 2


def test_cli_eval_bad_inputs(collection, capsys):
    ck = str(collection / "ckpts")
    assert cli.main(["eval", "--samples", str(collection / "nope"), "--ckpts", ck]) == 2
    assert "nope does not exist" in capsys.readouterr().err

    (collection / "empty").mkdir()
    assert cli.main(["eval", "--samples", str(collection / "empty"), "--ckpts", ck]) == 2
    assert "no .safetensors" in capsys.readouterr().err

    # A folder where no file fits the checkpoints is refused, naming the file, key and shape.

    sd = load_file(str(collection / "samples" / "s0.safetensors"))
    sd["net.0.weight"] = torch.zeros(8, 3)
    save_safetensors(collection / "bad" / "x.safetensors", sd)
    assert cli.main(["eval", "--samples", str(collection / "bad"), "--ckpts", ck,
                     "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert "x.safetensors" in err and "'net.0.weight'" in err and "(8, 3)" in err

    assert cli.main(["eval", "--samples", str(collection / "samples"), "--ckpts", ck,
                     "--noise-scales", "-1"]) == 2
    assert "--noise-scales" in capsys.readouterr().err
