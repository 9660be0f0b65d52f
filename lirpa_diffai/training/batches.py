"""The training data: the configured subsets, each epoch's batches (a function of the seed
and the epoch only, split over the processes) and CIFAR-style augmentation."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from .. import data, imagenet
from .config import TrainConfig
from .distributed import Dist
from .errors import TrainingError


def load_data(cfg: TrainConfig) -> tuple:
    """``(train, test)`` image and label tensors: the first ``train_subset`` /
    ``test_subset`` examples of the configuration's dataset."""
    def take(split, n):
        x, y = dataset_of(cfg, split).tensors
        return (x[:n], y[:n]) if n else (x, y)
    return take("train", cfg.train_subset), take("test", cfg.test_subset)


def dataset_of(cfg: TrainConfig, split: str):
    """The configuration's dataset split: from ``data_root`` when it is given (and nowhere
    else: a ``data_root`` that does not hold the dataset is an error naming it), else from
    :func:`lirpa_diffai.data.load_dataset`'s search order. Tiny ImageNet and downscaled
    ImageNet come from ``data_root`` only (:func:`lirpa_diffai.imagenet.load_many_classes`)."""
    if cfg.dataset in imagenet.MANY_CLASS_DATASETS:
        try:
            return imagenet.load_many_classes(cfg.dataset, cfg.data_root, split)
        except (data.DatasetNotFoundError, ValueError) as err:
            raise TrainingError(f"data_root {cfg.data_root} in {cfg.source} ({cfg.dataset}, "
                                f"{split}): {err}") from None
    if cfg.data_root is None:
        return data.load_dataset(cfg.dataset, split)
    root, tried = Path(cfg.data_root), []
    if not root.is_dir():
        raise TrainingError(f"data_root {cfg.data_root} in {cfg.source} is not a directory")
    found = data.read_user_dir(root, cfg.dataset, split, tried)
    if found is None:
        raise TrainingError(f"data_root {cfg.data_root} in {cfg.source} does not hold "
                            f"{cfg.dataset} ({split}); looked for:\n  " + "\n  ".join(tried))
    return data.to_dataset(*found, cfg.dataset)


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, dist: Dist) -> list:
    """This process's index batches of epoch ``epoch`` (0-based). The permutation is
    ``DistributedSampler``'s for ``(seed, epoch)``; process r takes positions r, r + N, ...
    so the union of the processes' k-th batches is the one-process run's k-th batch of
    ``batch_size`` (the global batch)."""
    from torch.utils.data.distributed import DistributedSampler
    if batch_size % dist.world:
        raise TrainingError(f"batch_size {batch_size} is not divisible by the {dist.world} "
                            "processes")
    sampler = DistributedSampler(range(n), num_replicas=dist.world, rank=dist.rank,
                                 shuffle=True, seed=seed, drop_last=False)
    sampler.set_epoch(epoch)
    order = torch.tensor(list(sampler), dtype=torch.long)
    return list(order.split(batch_size // dist.world))


def augment(x: torch.Tensor, padding: int = 4) -> torch.Tensor:
    """Random crop (zero padding ``padding``) and random horizontal flip, per image, drawn
    from torch's RNG of ``x``'s device."""
    b, _, h, w = x.shape
    dev = x.device
    padded = F.pad(x, [padding] * 4)
    dy = torch.randint(0, 2 * padding + 1, (b,), device=dev)
    dx = torch.randint(0, 2 * padding + 1, (b,), device=dev)
    rows = (dy.view(b, 1) + torch.arange(h, device=dev)).view(b, 1, h, 1)
    cols = (dx.view(b, 1) + torch.arange(w, device=dev)).view(b, 1, 1, w)
    idx_b = torch.arange(b, device=dev).view(b, 1, 1, 1)
    out = padded[idx_b, torch.arange(x.shape[1], device=dev).view(1, -1, 1, 1), rows, cols]
    flip = torch.rand(b, device=dev) < 0.5
    return torch.where(flip.view(b, 1, 1, 1), out.flip(3), out)
