"""Datasets (MNIST, CIFAR-10) as float tensors in [0, 1], and their fixed constants.

``load_dataset(name, split, root)`` looks for the data in this order and uses the first
place that has it:

1. ``root``, when given: ``<root>/<name>.npz`` in the shared format (uint8 images, int64
   labels, keys ``x_train``/``y_train``/``x_test``/``y_test``), else torchvision's layout
   (``<root>/MNIST/raw/*-idx?-ubyte[.gz]``, ``<root>/cifar-10-batches-py/``);
2. the directory in the environment variable ``LIRPA_DIFFAI_DATA``, searched the same way;
3. ``<shared>/datasets/<name>.npz``, where ``<shared>`` is ``$LIRPA_DIFFAI_SHARED`` or the
   ``shared`` directory beside the repository;
4. torchvision's downloader, when torchvision imports, into ``root``, ``$LIRPA_DIFFAI_DATA``
   or ``~/.cache/lirpa_diffai``.

CIFAR-10's python batches are pickles. They are read only from a directory the user names
(``root`` or ``LIRPA_DIFFAI_DATA``), since unpickling runs whatever the file says.
"""
from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

Arrays = tuple[np.ndarray, np.ndarray]  # uint8 images, labels

DATASETS = ("mnist", "cifar10")
SPLITS = ("train", "test")

INPUT_SHAPES = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32)}

# Per-channel input normalisation of the zoo's networks: MNIST's usual constants, CIFAR-10's
# as printed in the paper's network figures (appendix D).
MEAN_STD = {
    "mnist": ((0.1307,), (0.3081,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.201)),
}

DATA_ENV = "LIRPA_DIFFAI_DATA"
SHARED_ENV = "LIRPA_DIFFAI_SHARED"

_MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_CIFAR_FILES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
_IDX_UBYTE = 0x08


class DatasetNotFoundError(FileNotFoundError):
    """No searched place holds the requested dataset; the message lists every place."""


def check_name(name: str) -> str:
    """Return ``name`` if it is a known dataset, else raise ValueError naming the choices."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return name


def input_shape(name: str) -> tuple[int, int, int]:
    """Shape (C, H, W) of one input image of dataset ``name``."""
    return INPUT_SHAPES[check_name(name)]


def data_range(name: str) -> tuple[float, float]:
    """Range (lo, hi) of the pixel values returned by ``load_dataset``."""
    check_name(name)
    return (0.0, 1.0)


def eps_box(x: torch.Tensor, eps: float, data_range=(0.0, 1.0)) -> tuple[torch.Tensor, torch.Tensor]:
    """The L-inf ball of radius ``eps`` around ``x`` inside the data range ``(lo, hi)``:
    ``[max(x - eps, lo), min(x + eps, hi)]``."""
    lo, hi = data_range
    return (x - eps).clamp(min=lo), (x + eps).clamp(max=hi)


def mean_std(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) used by the zoo's ``Normalize`` first layer."""
    return MEAN_STD[check_name(name)]


def shared_root() -> Path:
    """The shared directory: ``$LIRPA_DIFFAI_SHARED``, else ``shared`` beside the repository."""
    env = os.environ.get(SHARED_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared"


def to_dataset(images: np.ndarray, labels: np.ndarray, name: str) -> TensorDataset:
    """uint8 images (N, [C,] H, W) and labels as a TensorDataset of float32 in [0, 1] and int64."""
    x = torch.from_numpy(np.array(images, dtype=np.uint8)).to(torch.float32).div_(255.0)
    x = x.reshape(len(x), *input_shape(name))
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64).copy())
    if len(x) != len(y):
        raise ValueError(f"{name}: {len(x)} images but {len(y)} labels")
    return TensorDataset(x, y)


def read_npz(path: Path, split: str) -> Arrays:
    """Images and labels of ``split`` from a shared-format ``.npz`` (no pickle)."""
    with np.load(path, allow_pickle=False) as f:
        return f[f"x_{split}"], f[f"y_{split}"]


def read_idx(path: Path) -> np.ndarray:
    """An unsigned-byte idx file (MNIST's format), plain or gzip-compressed."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _IDX_UBYTE:
        raise ValueError(f"{path}: not an unsigned-byte idx file (magic {raw[:4].hex()})")
    ndim = raw[3]
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims}, found {data.size} bytes of data")
    return data.reshape(dims)


def find_idx(raw_dir: Path, stem: str) -> Path | None:
    """``raw_dir/stem`` or its ``.gz``, whichever exists first."""
    for path in (raw_dir / stem, raw_dir / f"{stem}.gz"):
        if path.is_file():
            return path
    return None


def read_mnist_raw(raw_dir: Path, split: str) -> Arrays | None:
    """MNIST from torchvision's ``MNIST/raw`` idx files, or None if a file is missing."""
    paths = [find_idx(raw_dir, stem) for stem in _MNIST_FILES[split]]
    if None in paths:
        return None
    return read_idx(paths[0]), read_idx(paths[1])


def read_cifar_batch(path: Path) -> Arrays:
    """One CIFAR-10 python batch. It is a pickle: call only on a file the user pointed to."""
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    return data, np.asarray(batch[b"labels"], dtype=np.int64)


def read_cifar_batches(batch_dir: Path, split: str) -> Arrays | None:
    """CIFAR-10 from ``cifar-10-batches-py``, or None if a batch file is missing."""
    paths = [batch_dir / f for f in _CIFAR_FILES[split]]
    if not all(p.is_file() for p in paths):
        return None
    parts = [read_cifar_batch(p) for p in paths]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def read_user_dir(directory: Path, name: str, split: str, tried: list[str]) -> Arrays | None:
    """Data from a user-named directory (npz, then torchvision layout); records what it tried."""
    npz = directory / f"{name}.npz"
    tried.append(str(npz))
    if npz.is_file():
        return read_npz(npz, split)
    if name == "mnist":
        raw_dir = directory / "MNIST" / "raw"
        tried.append(f"{raw_dir}/{{{','.join(_MNIST_FILES[split])}}}[.gz]")
        return read_mnist_raw(raw_dir, split)
    batch_dir = directory / "cifar-10-batches-py"
    tried.append(f"{batch_dir}/{{{','.join(_CIFAR_FILES[split])}}}")
    return read_cifar_batches(batch_dir, split)


def download_torchvision(name: str, split: str, directory: Path,
                         tried: list[str]) -> Arrays | None:
    """Data through torchvision's downloader, or None when torchvision is unusable here."""
    try:
        from torchvision import datasets
    except Exception as err:  # its wheels can fail at import with errors other than ImportError
        tried.append(f"torchvision download (torchvision does not import: {err})")
        return None
    tried.append(f"torchvision download into {directory}")
    cls = datasets.MNIST if name == "mnist" else datasets.CIFAR10
    try:
        ds = cls(str(directory), train=split == "train", download=True)
    except (OSError, RuntimeError) as err:
        tried[-1] += f" (failed: {err})"
        return None
    images = np.asarray(ds.data)
    if name == "cifar10":  # torchvision keeps CIFAR-10 as (N, H, W, C)
        images = images.transpose(0, 3, 1, 2)
    return images, np.asarray(ds.targets)


def load_dataset(name: str, split: str, root: str | os.PathLike | None = None) -> TensorDataset:
    """Dataset ``name`` ("mnist" | "cifar10"), ``split`` ("train" | "test") as a TensorDataset:
    float32 images (N, C, H, W) in [0, 1] and int64 labels. See the module docstring for
    where it looks; raises ``DatasetNotFoundError`` listing every place searched."""
    check_name(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    tried: list[str] = []
    user_dirs = [Path(d) for d in (root, os.environ.get(DATA_ENV)) if d]
    for directory in user_dirs:
        found = read_user_dir(directory, name, split, tried)
        if found is not None:
            return to_dataset(*found, name)
    shared = shared_root() / "datasets" / f"{name}.npz"
    tried.append(str(shared))
    if shared.is_file():
        return to_dataset(*read_npz(shared, split), name)
    target = user_dirs[0] if user_dirs else Path.home() / ".cache" / "lirpa_diffai"
    found = download_torchvision(name, split, target, tried)
    if found is not None:
        return to_dataset(*found, name)
    places = "\n  ".join(tried)
    raise DatasetNotFoundError(f"{name} ({split}) not found; searched:\n  {places}")
