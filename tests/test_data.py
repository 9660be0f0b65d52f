"""Datasets: the shared npz files, torchvision's file layout, the search order and its error."""
from __future__ import annotations

import gzip
import pickle
import sys
import types

import numpy as np
import pytest
import torch

from lirpa_diffai import data

SHARED_DATA = data.shared_root() / "datasets"
needs_shared = pytest.mark.skipif(
    not SHARED_DATA.is_dir(),
    reason=f"shared datasets not found at {SHARED_DATA} (set {data.SHARED_ENV})")

# Label counts 0..9 from ../shared/datasets/MANIFEST.md.
MANIFEST = {
    ("mnist", "train"): (60000, [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]),
    ("mnist", "test"): (10000, [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]),
    ("cifar10", "train"): (5000, [508, 515, 478, 484, 527, 469, 497, 512, 518, 492]),
    ("cifar10", "test"): (1000, [103, 89, 100, 103, 90, 86, 112, 102, 106, 109]),
}


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No shared directory, no LIRPA_DIFFAI_DATA, no torchvision."""
    monkeypatch.setenv(data.SHARED_ENV, str(tmp_path / "no-shared"))
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "torchvision", None)
    return tmp_path


def write_idx(path, array: np.ndarray, compress: bool) -> None:
    """An unsigned-byte idx file as in MNIST's distribution."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(f"{path}.gz", "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def write_cifar_batch(path, images: np.ndarray, labels: np.ndarray) -> None:
    """A CIFAR-10 python batch (a pickled dict with bytes keys, rows of 3072 bytes)."""
    batch = {b"data": images.reshape(len(images), -1), b"labels": labels.tolist()}
    with open(path, "wb") as f:
        pickle.dump(batch, f)


def random_split(rng, n, shape):
    return rng.integers(0, 256, (n, *shape), dtype=np.uint8), rng.integers(0, 10, n)


def test_constants():
    assert data.input_shape("mnist") == (1, 28, 28)
    assert data.input_shape("cifar10") == (3, 32, 32)
    assert data.data_range("mnist") == data.data_range("cifar10") == (0.0, 1.0)
    assert data.mean_std("mnist") == ((0.1307,), (0.3081,))
    mean, std = data.mean_std("cifar10")
    assert mean == (0.4914, 0.4822, 0.4465) and std == (0.2023, 0.1994, 0.201)
    with pytest.raises(ValueError, match="mnist, cifar10"):
        data.input_shape("svhn")
    with pytest.raises(ValueError, match="train, test"):
        data.load_dataset("mnist", "valid")


@needs_shared
@pytest.mark.parametrize("name,split", list(MANIFEST))
def test_shared_npz_matches_manifest(name, split, monkeypatch):
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    x, y = data.load_dataset(name, split).tensors
    count, per_class = MANIFEST[name, split]
    assert x.shape == (count, *data.input_shape(name)) and x.dtype == torch.float32
    assert y.shape == (count,) and y.dtype == torch.int64
    assert x.min() == 0.0 and x.max() == 1.0
    assert torch.bincount(y, minlength=10).tolist() == per_class
    # values are exactly k / 255
    assert torch.equal(torch.round(x[:50] * 255) / 255, x[:50])


@needs_shared
def test_mnist_train_mean_as_manifest(monkeypatch):
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    x, _ = data.load_dataset("mnist", "train").tensors
    assert x.mean().item() == pytest.approx(0.1307, abs=5e-5)


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_torchvision_layout(isolated, compress):
    rng = np.random.default_rng(0)
    raw = isolated / "MNIST" / "raw"
    raw.mkdir(parents=True)
    expected = {}
    for split, (images_file, labels_file) in (("train", ("train-images-idx3-ubyte",
                                                         "train-labels-idx1-ubyte")),
                                              ("test", ("t10k-images-idx3-ubyte",
                                                        "t10k-labels-idx1-ubyte"))):
        images, labels = random_split(rng, 7, (28, 28))
        write_idx(raw / images_file, images, compress)
        write_idx(raw / labels_file, labels.astype(np.uint8), compress)
        expected[split] = images, labels
    for split, (images, labels) in expected.items():
        x, y = data.load_dataset("mnist", split, root=isolated).tensors
        assert x.shape == (7, 1, 28, 28) and x.dtype == torch.float32
        assert torch.equal(x, torch.from_numpy(images).float().div(255).unsqueeze(1))
        assert y.dtype == torch.int64 and y.tolist() == labels.tolist()


def test_cifar_torchvision_layout_and_npz_load_identically(isolated):
    rng = np.random.default_rng(1)
    batches = isolated / "tv" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    parts = [random_split(rng, 2, (3, 32, 32)) for _ in range(5)]
    for i, (images, labels) in enumerate(parts, 1):
        write_cifar_batch(batches / f"data_batch_{i}", images, labels)
    test_images, test_labels = random_split(rng, 3, (3, 32, 32))
    write_cifar_batch(batches / "test_batch", test_images, test_labels)
    train_images = np.concatenate([p[0] for p in parts])
    train_labels = np.concatenate([p[1] for p in parts])
    (isolated / "npz").mkdir()
    np.savez(isolated / "npz" / "cifar10.npz", x_train=train_images, y_train=train_labels,
             x_test=test_images, y_test=test_labels)
    for split, count in (("train", 10), ("test", 3)):
        x_tv, y_tv = data.load_dataset("cifar10", split, root=isolated / "tv").tensors
        x_np, y_np = data.load_dataset("cifar10", split, root=isolated / "npz").tensors
        assert x_tv.shape == (count, 3, 32, 32)
        assert torch.equal(x_tv, x_np) and torch.equal(y_tv, y_np)
    assert torch.equal(x_tv, torch.from_numpy(test_images).float() / 255)


def test_incomplete_cifar_batches_are_not_used(isolated):
    batches = isolated / "cifar-10-batches-py"
    batches.mkdir()
    write_cifar_batch(batches / "data_batch_1", *random_split(np.random.default_rng(2), 2,
                                                              (3, 32, 32)))
    with pytest.raises(data.DatasetNotFoundError):
        data.load_dataset("cifar10", "train", root=isolated)


def test_idx_with_wrong_magic_is_rejected(tmp_path):
    path = tmp_path / "bad-idx"
    path.write_bytes(bytes([0, 0, 0x0D, 1, 0, 0, 0, 1]) + b"\0\0\0\0")
    with pytest.raises(ValueError, match="unsigned-byte idx"):
        data.read_idx(path)
    path.write_bytes(bytes([0, 0, 0x08, 1, 0, 0, 0, 5, 1, 2]))
    with pytest.raises(ValueError, match="header says"):
        data.read_idx(path)


def test_search_order_root_then_env_then_shared(isolated, monkeypatch):
    rng = np.random.default_rng(3)
    for where, n in (("root", 2), ("env", 4), ("no-shared/datasets", 6)):
        (isolated / where).mkdir(parents=True)
        images, labels = random_split(rng, n, (28, 28))
        np.savez(isolated / where / "mnist.npz", x_test=images, y_test=labels,
                 x_train=images, y_train=labels)
    monkeypatch.setenv(data.DATA_ENV, str(isolated / "env"))
    assert len(data.load_dataset("mnist", "test", root=isolated / "root")) == 2
    assert len(data.load_dataset("mnist", "test")) == 4
    monkeypatch.delenv(data.DATA_ENV)
    assert len(data.load_dataset("mnist", "test")) == 6


def test_error_lists_every_place_searched(isolated, monkeypatch):
    monkeypatch.setenv(data.DATA_ENV, str(isolated / "env"))
    with pytest.raises(data.DatasetNotFoundError) as err:
        data.load_dataset("mnist", "test", root=isolated / "root")
    assert isinstance(err.value, FileNotFoundError)
    message = str(err.value)
    for place in (isolated / "root" / "mnist.npz", isolated / "root" / "MNIST" / "raw",
                  isolated / "env" / "mnist.npz", isolated / "env" / "MNIST" / "raw",
                  isolated / "no-shared" / "datasets" / "mnist.npz"):
        assert str(place) in message
    assert "t10k-images-idx3-ubyte" in message
    assert "torchvision does not import" in message


def test_a_broken_torchvision_is_reported_not_raised(isolated, broken_torchvision):
    with pytest.raises(data.DatasetNotFoundError) as err:
        data.load_dataset("mnist", "test", root=isolated / "root")
    assert "torchvision does not import: operator torchvision::nms does not exist" in str(err.value)


def test_torchvision_download_is_the_last_resort(isolated, monkeypatch):
    rng = np.random.default_rng(4)
    hwc, labels = random_split(rng, 3, (32, 32, 3))
    calls = []

    class FakeCIFAR10:
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            self.data, self.targets = hwc, labels.tolist()

    fake = types.ModuleType("torchvision")
    fake.datasets = types.SimpleNamespace(CIFAR10=FakeCIFAR10)
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    x, y = data.load_dataset("cifar10", "test", root=isolated / "dl").tensors
    assert calls == [(str(isolated / "dl"), False, True)]
    assert torch.equal(x, torch.from_numpy(hwc.transpose(0, 3, 1, 2)).float() / 255)
    assert y.tolist() == labels.tolist()
