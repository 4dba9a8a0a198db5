"""Training tokens kept in a file: the same windows, the same weights, the same data fingerprint
as in memory, and no file left behind (methods/rpg/token_store.py)."""

import hashlib
import os

import pytest
import torch

from paramgen import CheckpointSet, train_state
from paramgen.methods import RPG, RPGConfig, fingerprint
from paramgen.methods.rpg import token_store
from paramgen.methods.rpg.window import window_index
from paramgen.tokenize import Tokenizer

# 600 + 20 values in tokens of 16: L = 40 tokens; windows of 7 leave a last window of 5.
TINY = dict(token_size=16, d_model=(32, 32), d_state=4, denoiser_channels=(1, 8, 16),
            num_train_timesteps=50, batch_size=4, diffusion_batch=32, lr=1e-3, steps=14,
            sampler="ddim", sampling_steps=5, save_every=2, train_window=7, backbone="lstm")


def collection(n=4):
    g = torch.Generator().manual_seed(0)
    base_sd = {"a": torch.randn(20, 30, generator=g), "b": torch.randn(20, generator=g)}
    return CheckpointSet.from_state_dicts(
        [{k: v + 0.05 * torch.randn(v.shape, generator=g) for k, v in base_sd.items()}
         for _ in range(n)])


@pytest.fixture
def on_disk(monkeypatch):
    """Every windowed fit keeps its tokens in a file."""
    monkeypatch.setattr(token_store, "TOKENS_IN_MEMORY_MAX_BYTES", 0)


class Spy:
    """A fit callback that records the token store in use and the file's size."""

    def __init__(self, gen, stop_at=None):
        self.gen, self.stop_at, self.store, self.size = gen, stop_at, None, None
        self.first_step = None

    def __call__(self, step, loss):
        self.first_step = self.first_step or step
        self.store = self.gen._train["tokens"]
        if isinstance(self.store, token_store.FileTokens):
            self.size = os.fstat(self.store._file.fileno()).st_size
        if step == self.stop_at:
            raise KeyboardInterrupt


def old_fingerprint(*tensors):
    """data_fingerprint as it was before it could be fed in pieces (resume keys on it)."""
    h = hashlib.sha256()
    for t in tensors:
        if t is None:
            h.update(b"none")
            continue
        h.update(str((tuple(t.shape), str(t.dtype))).encode())
        h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def test_file_windows_equal_memory_windows_at_the_clamped_end(tmp_path):
    ck = collection()
    tok = Tokenizer.fit(ck, 16)
    L = tok.num_tokens
    mem = token_store.tokenize(tok, ck, len(ck), fingerprint.Fingerprint())
    disk = token_store.tokenize(tok, ck, len(ck), fingerprint.Fingerprint(), to_file=True,
                                folder=tmp_path)
    seqs = torch.tensor([3, 0, 2, 2])
    index, real = window_index(torch.tensor([35, 0, 14, 28]), 7, L)
    assert not real[0].all()  # the first row is a last, short window
    assert torch.equal(disk.windows(seqs, index), mem.windows(seqs, index))
    assert isinstance(disk, token_store.FileTokens)
    disk.close()
    assert disk.closed and list(tmp_path.iterdir()) == []


def test_file_backed_training_is_bit_identical_and_leaves_nothing(tmp_path, monkeypatch):
    ck = collection()
    in_memory = RPG(config=RPGConfig(**TINY))
    spy = Spy(in_memory)
    in_memory.fit(ck, progress=False, callback=spy)
    assert isinstance(spy.store, token_store.MemoryTokens)

    monkeypatch.setattr(token_store, "TOKENS_IN_MEMORY_MAX_BYTES", 0)
    work = tmp_path / "work"
    from_file = RPG(config=RPGConfig(**TINY))
    spy = Spy(from_file)
    from_file.fit(ck, progress=False, callback=spy, workdir=work)
    assert isinstance(spy.store, token_store.FileTokens)
    assert spy.size == 4 * 40 * 16 * 4  # N x L x T float32
    for k, v in in_memory.network.state_dict().items():
        assert torch.equal(v, from_file.network.state_dict()[k]), k
    assert spy.store.closed
    assert sorted(p.name for p in work.iterdir()) == sorted(
        p.name for p in train_state.paths(work))


def test_the_token_file_goes_when_the_fit_fails(tmp_path, on_disk):
    gen = RPG(config=RPGConfig(**TINY))
    spy = Spy(gen, stop_at=3)
    with pytest.raises(KeyboardInterrupt):
        gen.fit(collection(), progress=False, callback=spy, workdir=tmp_path)
    assert isinstance(spy.store, token_store.FileTokens) and spy.store.closed
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in train_state.paths(tmp_path))


def test_in_memory_fingerprint_is_unchanged(tmp_path):
    ck = collection()
    gen = RPG(config=RPGConfig(**TINY))
    gen.fit(ck, steps=2, progress=False, workdir=tmp_path)
    tokens = torch.stack([gen.tokenizer.tokenize(sd) for sd in ck])
    want = old_fingerprint(tokens, None, torch.arange(len(ck)))
    assert train_state.load(tmp_path)["identity"]["data"] == want


def test_sliced_fingerprint_equals_the_whole_tensor_one(monkeypatch):
    g = torch.Generator().manual_seed(1)
    t = torch.randn(3, 50, 16, generator=g)
    for sums_from in (1 << 28, 100):  # bytes, then row sums
        monkeypatch.setattr(fingerprint, "FINGERPRINT_SUMS_FROM", sums_from)
        sliced = fingerprint.Fingerprint()
        sliced.begin(t.shape, t.dtype)
        for row in t:
            sliced.feed(row)
        assert sliced.hexdigest() == fingerprint.data_fingerprint(t)
    assert fingerprint.data_fingerprint(t) != fingerprint.data_fingerprint(t + 1e-3)


def test_resume_crosses_stores_and_continues_from_file(tmp_path, monkeypatch):
    ck = collection()
    straight = RPG(config=RPGConfig(**TINY)).fit(ck, progress=False)
    # Started with the tokens in memory, stopped at step 3 (saved at 2)...
    gen = RPG(config=RPGConfig(**TINY))
    with pytest.raises(KeyboardInterrupt):
        gen.fit(ck, progress=False, workdir=tmp_path, callback=Spy(gen, stop_at=3))
    # ...resumed with them in a file: the data fingerprint matches, so it continues.
    monkeypatch.setattr(token_store, "TOKENS_IN_MEMORY_MAX_BYTES", 0)
    gen = RPG(config=RPGConfig(**TINY))
    spy = Spy(gen, stop_at=7)
    with pytest.raises(KeyboardInterrupt):
        gen.fit(ck, progress=False, workdir=tmp_path, callback=spy)
    assert spy.first_step == 3 and isinstance(spy.store, token_store.FileTokens)
    resumed = RPG(config=RPGConfig(**TINY))
    spy = Spy(resumed)
    resumed.fit(ck, progress=False, workdir=tmp_path, callback=spy)
    assert isinstance(spy.store, token_store.FileTokens)
    assert resumed.train_report.resumed_from == 6
    for k, v in straight.network.state_dict().items():
        assert torch.allclose(v, resumed.network.state_dict()[k], atol=1e-6), k
