"""Datasets with many classes, read from their usual on-disk layouts (never downloaded): Tiny
ImageNet (200 classes, 64x64) and downscaled ImageNet (Chrabaszcz et al. 2017: 1000 classes,
8x8 to 64x64). Both load as ``lirpa_diffai.data``'s datasets do: a TensorDataset of float32
images (N, 3, H, W) in [0, 1] and int64 labels; a missing directory or file is a
``DatasetNotFoundError`` naming the path.

Tiny ImageNet (``tiny-imagenet-200``)::

    <root>/wnids.txt                         one class id (wnid) per line
    <root>/train/<wnid>/images/*.JPEG        the training images of each class
    <root>/val/images/*.JPEG                 the labelled held-out images ("test" here)
    <root>/val/val_annotations.txt           "<file>\\t<wnid>\\t..." per image

The label of a wnid is its position among the sorted wnids (the order torchvision's
``ImageFolder`` gives the train directories). JPEG decoding takes Pillow, an optional
dependency (``pip install pillow``): torchvision's decoder needs CUDA wheels here, and the
standard library has none. ``decode`` replaces it (a path -> (H, W, 3) uint8 array).

Downscaled ImageNet (``Imagenet32_train`` / ``Imagenet32_val`` and the other sizes)::

    <root>/[<any subdirectory>/]train_data_batch_1 ... train_data_batch_10
    <root>/[<any subdirectory>/]val_data     ("test" here)

each a dict with ``data`` (N, 3 * S * S) uint8, channel planes as CIFAR's, and ``labels``
(1-based; returned 0-based). A file is read as ``<name>.npz`` (no pickle) when that exists,
else as the pickle ``<name>``: pickles run whatever they hold, so they are read only from the
directory the caller names, as CIFAR-10's batches are.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import TensorDataset

from .data import DatasetNotFoundError

TINY_SPLIT_DIRS = {"train": "train", "test": "val"}
DOWNSCALED_SIZES = (8, 16, 32, 64)
# the training configuration's dataset names -> (number of classes, input shape (C, H, W))
MANY_CLASS_DATASETS = {"tiny_imagenet": (200, (3, 64, 64)),
                       **{f"imagenet{s}": (1000, (3, s, s)) for s in DOWNSCALED_SIZES}}
DOWNSCALED_FILES = {"train": tuple(f"train_data_batch_{i}" for i in range(1, 11)), "test": ("val_data",)}


def _directory(root: str | os.PathLike, what: str) -> Path:
    path = Path(root)
    if not path.is_dir():
        raise DatasetNotFoundError(f"{what}: no directory {path}")
    return path


def _split(split: str) -> str:
    if split not in TINY_SPLIT_DIRS:
        raise ValueError(f"unknown split {split!r}; choose train or test")
    return split


def as_dataset(images: np.ndarray, labels: np.ndarray) -> TensorDataset:
    """uint8 images (N, 3, H, W) and labels as float32 in [0, 1] and int64."""
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8)).to(torch.float32).div_(255.0)
    return TensorDataset(x, torch.from_numpy(np.asarray(labels, dtype=np.int64)))


def pillow_decode(path: Path) -> np.ndarray:
    """A JPEG as an (H, W, 3) uint8 array (grayscale images become RGB), with Pillow."""
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(f"decoding {path} needs Pillow (pip install pillow); or pass "
                          "decode= a function path -> (H, W, 3) uint8 array") from None
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def tiny_imagenet_wnids(root: Path) -> list[str]:
    """The sorted class ids of ``<root>/wnids.txt``."""
    path = root / "wnids.txt"
    if not path.is_file():
        raise DatasetNotFoundError(f"Tiny ImageNet: no file {path}")
    return sorted(line.strip() for line in path.read_text().splitlines() if line.strip())


def tiny_imagenet_files(root: Path, split: str, wnids: list[str]) -> list[tuple[Path, int]]:
    """``(image path, label)`` of every image of ``split``, in a fixed order."""
    index = {w: i for i, w in enumerate(wnids)}
    if split == "train":
        found = []
        for wnid in wnids:
            images = root / "train" / wnid / "images"
            if not images.is_dir():
                raise DatasetNotFoundError(f"Tiny ImageNet: no directory {images}")
            found += [(p, index[wnid]) for p in sorted(images.glob("*.JPEG"))]
        return found
    notes = root / "val" / "val_annotations.txt"
    if not notes.is_file():
        raise DatasetNotFoundError(f"Tiny ImageNet: no file {notes}")
    found = []
    for number, line in enumerate(notes.read_text().splitlines(), 1):
        if not line.strip():
            continue
        name, wnid = line.split("\t")[:2]
        if wnid not in index:
            raise ValueError(f"{notes}, line {number}: class {wnid!r} is not in wnids.txt")
        found.append((root / "val" / "images" / name, index[wnid]))
    return found


def load_tiny_imagenet(root: str | os.PathLike, split: str = "train", limit: int | None = None,
                       decode: Callable[[Path], np.ndarray] = pillow_decode) -> TensorDataset:
    """Tiny ImageNet's ``split`` ("train", or "test": the labelled ``val`` directory) from
    ``root`` (the module docstring's layout); ``limit``: the first images only."""
    root = _directory(root, "Tiny ImageNet")
    files = tiny_imagenet_files(root, _split(split), tiny_imagenet_wnids(root))[:limit]
    missing = [str(p) for p, _ in files if not p.is_file()]
    if missing:
        raise DatasetNotFoundError(f"Tiny ImageNet: no file {missing[0]} ({len(missing)} missing)")
    images = np.stack([decode(p) for p, _ in files]) if files else np.zeros((0, 64, 64, 3), np.uint8)
    return as_dataset(images.transpose(0, 3, 1, 2), [label for _, label in files])


def find_file(root: Path, name: str) -> Path:
    """``root/name[.npz]`` or ``root/<subdirectory>/name[.npz]``, the ``.npz`` first."""
    for directory in (root, *sorted(p for p in root.iterdir() if p.is_dir())):
        for candidate in (directory / f"{name}.npz", directory / name):
            if candidate.is_file():
                return candidate
    raise DatasetNotFoundError(f"downscaled ImageNet: no file {name}[.npz] in {root} or "
                               "its subdirectories")


def read_downscaled_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One file's images (N, 3, S, S) uint8 and 0-based labels."""
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as f:
            data, labels = f["data"], f["labels"]
    else:
        with open(path, "rb") as f:
            batch = pickle.load(f)
        data, labels = batch["data"], batch["labels"]
    data = np.asarray(data, dtype=np.uint8)
    side = int(round((data.shape[1] / 3) ** 0.5))
    if 3 * side * side != data.shape[1]:
        raise ValueError(f"{path}: rows of {data.shape[1]} values are not 3 square channel planes")
    labels = np.asarray(labels, dtype=np.int64) - 1
    if labels.size and labels.min() < 0:
        raise ValueError(f"{path}: labels must be 1-based (found {labels.min() + 1})")
    return data.reshape(len(data), 3, side, side), labels


def load_downscaled_imagenet(root: str | os.PathLike, split: str = "train",
                             limit: int | None = None) -> TensorDataset:
    """Downscaled ImageNet's ``split`` ("train": the ten training batches; "test": ``val_data``)
    from ``root``; ``limit``: the first images only (later batches are not read)."""
    root = _directory(root, "downscaled ImageNet")
    images, labels, count = [], [], 0
    for name in DOWNSCALED_FILES[_split(split)]:
        if limit is not None and count >= limit:
            break
        data, y = read_downscaled_batch(find_file(root, name))
        images.append(data)
        labels.append(y)
        count += len(y)
    return as_dataset(np.concatenate(images)[:limit], np.concatenate(labels)[:limit])


def load_many_classes(name: str, root: str | os.PathLike, split: str) -> TensorDataset:
    """The dataset ``name`` of :data:`MANY_CLASS_DATASETS` (``tiny_imagenet`` or
    ``imagenet<S>``, downscaled ImageNet at S x S) from ``root``, as the trainer reads it
    (Tiny ImageNet's JPEGs through :func:`pillow_decode`)."""
    if name == "tiny_imagenet":
        return load_tiny_imagenet(root, split, decode=pillow_decode)
    if name not in MANY_CLASS_DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(MANY_CLASS_DATASETS)}")
    found = load_downscaled_imagenet(root, split)
    size = tuple(found.tensors[0].shape[1:])
    if size != MANY_CLASS_DATASETS[name][1]:
        raise ValueError(f"{root} holds downscaled ImageNet of shape {size}, not {name}'s "
                         f"{MANY_CLASS_DATASETS[name][1]}")
    return found
