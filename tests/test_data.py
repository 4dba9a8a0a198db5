"""Dataset loaders and binary-task utilities."""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from paramgen import data


def test_digits_shapes_dtypes_and_range() -> None:
    x_tr, y_tr, x_te, y_te = data.load("digits")
    assert x_tr.shape == (1437, 1, 8, 8) and x_te.shape == (360, 1, 8, 8)
    assert y_tr.shape == (1437,) and y_te.shape == (360,)
    assert x_tr.dtype == torch.float32 and y_tr.dtype == torch.int64
    assert 0.0 <= float(x_tr.min()) and float(x_tr.max()) <= 1.0
    assert data.input_shape("digits") == tuple(x_tr.shape[1:])


def test_digits_split_is_seeded_and_stratified() -> None:
    a, b = data.load("digits", seed=0), data.load("digits", seed=0)
    for t, u in zip(a, b):
        assert torch.equal(t, u)
    c = data.load("digits", seed=1)
    assert not torch.equal(a[0], c[0])
    # Stratified: every class has 35..37 of the 360 test images.
    counts = torch.bincount(a[3], minlength=10)
    assert int(counts.min()) >= 35 and int(counts.max()) <= 37


def test_mnist1d_generated_offline_and_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    import mnist1d.data

    def no_download(*args, **kwargs):
        raise AssertionError("mnist1d.get_dataset (which may download) must not be called")

    monkeypatch.setattr(mnist1d.data, "get_dataset", no_download)
    # Force a real generation so the RNG check below is meaningful.
    data.loaders._mnist1d_arrays.cache_clear()
    random.seed(123)
    np.random.seed(123)
    expected = (random.random(), np.random.rand())
    random.seed(123)
    np.random.seed(123)
    x_tr, y_tr, x_te, y_te = data.load("mnist1d")
    # Loading must not disturb the caller's global random streams.
    assert (random.random(), np.random.rand()) == expected
    assert x_tr.shape == (4000, 40) and x_te.shape == (1000, 40)
    assert x_tr.dtype == torch.float32 and y_te.dtype == torch.int64
    assert set(y_tr.unique().tolist()) == set(range(10))
    # A second load returns equal data but fresh tensors: editing one leaves the cache intact.
    x_tr[0] = 1e6
    again = data.load("mnist1d")
    assert float(again[0][0].max()) < 1e3
    assert torch.equal(again[3], y_te)


def _write_batch(path: Path, n: int, rng: np.random.Generator, str_keys: bool = False) -> None:
    images = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, size=n)]
    batch = {"data": images, "labels": labels} if str_keys else {b"data": images,
                                                                   b"labels": labels}
    with open(path, "wb") as fh:
        pickle.dump(batch, fh)


def _fake_cifar(folder: Path, n: int = 20) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        _write_batch(folder / f"data_batch_{i}", n, rng, str_keys=(i == 2))
    _write_batch(folder / "test_batch", n, rng)


def test_cifar10_round_trip(tmp_path: Path) -> None:
    _fake_cifar(tmp_path / "cifar-10-batches-py")
    x_tr, y_tr, x_te, y_te = data.load("cifar10", root=str(tmp_path), allow_pickle=True)
    assert x_tr.shape == (100, 3, 32, 32) and x_te.shape == (20, 3, 32, 32)
    assert x_tr.dtype == torch.float32 and y_tr.dtype == torch.int64
    # Undo the normalisation of the first test pixel and compare with the raw byte.
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "rb") as fh:
        raw = pickle.load(fh)
    pixel = float(x_te[0, 0, 0, 0]) * data.CIFAR10_STD[0] + data.CIFAR10_MEAN[0]
    assert pixel == pytest.approx(raw[b"data"][0, 0] / 255.0, abs=1e-5)
    assert y_te.tolist() == raw[b"labels"]


def test_cifar10_env_var_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_cifar(tmp_path, n=4)
    monkeypatch.setenv("PARAMGEN_DATA", str(tmp_path))
    monkeypatch.setenv("PARAMGEN_ALLOW_PICKLE", "1")
    assert data.load("cifar10")[0].shape == (20, 3, 32, 32)


def test_cifar10_missing_folder_message(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as err:
        data.load("cifar10", root=str(missing))
    msg = str(err.value)
    assert str(missing) in msg and "cifar-10-batches-py" in msg
    assert "data_batch_1" in msg and "test_batch" in msg


def test_cifar10_bad_batch_names_file(tmp_path: Path) -> None:
    _fake_cifar(tmp_path, n=2)
    with open(tmp_path / "test_batch", "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 10), dtype=np.uint8), b"labels": [0, 1]}, fh)
    with pytest.raises(ValueError, match="test_batch"):
        data.load("cifar10", root=str(tmp_path), allow_pickle=True)


class _Payload:
    """Unpickling this calls os.system: what a crafted data file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_cifar10_pickles_need_opt_in_and_never_run_code(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PARAMGEN_ALLOW_PICKLE", raising=False)
    _fake_cifar(tmp_path, n=2)
    with pytest.raises(ValueError, match="--allow-pickle"):
        data.load("cifar10", root=str(tmp_path))  # no opt-in: not even opened
    marker = tmp_path / "payload_ran"
    with open(tmp_path / "data_batch_3", "wb") as fh:
        pickle.dump({b"data": _Payload(marker), b"labels": [0, 1]}, fh)
    with pytest.raises(ValueError, match=r"data_batch_3.*refusing to load posix\.system"):
        data.load("cifar10", root=str(tmp_path), allow_pickle=True)  # opted in: still refused
    assert not marker.exists()


def test_unknown_dataset_lists_known_names() -> None:
    with pytest.raises(ValueError) as err:
        data.load("imagenet")
    for name in data.list_datasets():
        assert name in str(err.value)
    assert data.list_datasets() == sorted(data.DATASETS)
    assert data.num_classes("CIFAR-10") == 10 and data.input_shape("mnist1d") == (40,)
    with pytest.raises(ValueError, match="imagenet"):
        data.num_classes("imagenet")


def test_all_tasks_and_subset() -> None:
    tasks = data.all_tasks()
    assert len(tasks) == 1022 == len(set(tasks))
    assert tasks == sorted(tasks)
    assert "0" * 10 not in tasks and "1" * 10 not in tasks
    assert data.all_tasks(3) == ["001", "010", "011", "100", "101", "110"]
    sub = data.task_subset(20, seed=3)
    assert len(set(sub)) == 20 and set(sub) <= set(tasks)
    assert data.task_subset(20, seed=3) == sub
    assert data.task_subset(5, seed=3) == sub[:5]
    assert data.task_subset(20, seed=4) != sub
    with pytest.raises(ValueError, match="1023"):
        data.task_subset(1023)


def test_relabel_and_condition() -> None:
    y = torch.tensor([0, 1, 2, 3, 9, 9])
    out = data.relabel(y, "0101010101")
    assert out.tolist() == [0, 1, 0, 1, 1, 1] and out.dtype == torch.int64
    assert data.relabel(y, [1, 0, 0, 0, 0, 0, 0, 0, 0, 0]).tolist() == [1, 0, 0, 0, 0, 0]
    cond = data.bits_to_condition("0011001100")
    assert cond.dtype == torch.float32 and cond.tolist() == [0, 0, 1, 1, 0, 0, 1, 1, 0, 0]
    with pytest.raises(ValueError, match="0..2"):
        data.relabel(torch.tensor([0, 5]), "011")


def test_class_weights_balance_the_loss() -> None:
    y = torch.tensor([0, 0, 0, 1])
    w = data.class_weights(y)
    assert torch.allclose(w, torch.tensor([4 / 6, 4 / 2]))
    # Each class then contributes the same total weight.
    assert float(w[0] * 3) == pytest.approx(float(w[1] * 1))
    assert data.class_weights(torch.tensor([1, 1])).tolist() == [0.0, 0.5]
    with pytest.raises(ValueError, match="outside"):
        data.class_weights(torch.tensor([0, 2]))


@pytest.mark.parametrize(
    "bad, fragment",
    [
        ("0000000000", "all 0"),
        ("1111111111", "all 1"),
        ("010101010", "length 9"),
        ("01010101011", "length 11"),
        ("01010x0101", "'x'"),
        ([0, 1, 2, 0, 0, 0, 0, 0, 0, 0], "2"),
        (3, "string, sequence or tensor"),
    ],
)
def test_parse_bits_errors(bad: object, fragment: str) -> None:
    with pytest.raises(ValueError) as err:
        data.parse_bits(bad)  # type: ignore[arg-type]
    assert fragment in str(err.value)


def test_parse_bits_accepts_many_forms() -> None:
    expected = "0101010101"
    for form in (expected, list(map(int, expected)), [c == "1" for c in expected],
                 torch.tensor([float(c) for c in expected]), np.array(list(map(int, expected)))):
        assert data.parse_bits(form) == expected
    assert data.parse_bits("011", num_classes=None) == "011"


@pytest.mark.parametrize("spec,expected", [
    ("0101010101", ["0101010101"]),  # issue 14: was read as the number 101010101
    ("0000000011", ["0000000011"]),  # issue 14: was 11 random tasks
    ("1000000000", ["1000000000"]),  # a bit string as long as the class count
    (" 0101010101 , 1000000000,0101010101", ["0101010101", "1000000000"]),
    ("all", 1022),
    ("ALL", 1022),
    ("11", 11),  # a count: no leading zero, not 10 characters
    ("10", 10),
    (3, 3),
])
def test_resolve_tasks_tells_bit_strings_from_counts(spec, expected) -> None:
    got = data.resolve_tasks(spec, num_classes=10, seed=0)
    if isinstance(expected, int):
        assert len(got) == expected and len(set(got)) == expected
        assert got == data.task_subset(expected, 10, seed=0) or expected == 1022
    else:
        assert got == expected


@pytest.mark.parametrize("spec,words", [
    ("011", "length 3"), ("00000000011", "length 11"), ("0000000000", "all 0"),
    ("5000", "0..1022"), ("", "selects no task"), (True, "expected 'all'"),
])
def test_resolve_tasks_errors(spec, words) -> None:
    with pytest.raises(ValueError, match=words):
        data.resolve_tasks(spec, num_classes=10)


def test_dataset_names_are_case_insensitive() -> None:
    assert data.canonical_name(" Digits ") == "digits"
    assert data.canonical_name("CIFAR-10") == "cifar10"
    assert torch.equal(data.load("DIGITS")[1], data.load("digits")[1])


def test_parse_task_spec_reads_files_and_passes_the_rest_on(tmp_path) -> None:
    from paramgen.data import parse_task_spec

    f = tmp_path / "tasks.txt"
    f.write_text("# two tasks\n0101010101\n\n1000000000  # the second\n")
    assert parse_task_spec(f" @{f} ") == ["0101010101", "1000000000"]
    assert parse_task_spec(" all ") == "all"
    assert parse_task_spec("12") == "12"
    with pytest.raises(FileNotFoundError, match="missing.txt does not exist"):
        parse_task_spec(f"@{tmp_path / 'missing.txt'}")
