"""The one loader of the networks users bring, for ``certify``, ``plot layers``, ``graft``,
``export``, the examples and the benchmarks (:func:`load_model`):

- a training run directory, or its ``checkpoint.pt`` (network and dataset from the stored
  configuration);
- a grafted checkpoint of ``graft`` (``grafted.pt`` or its directory);
- a pretrained network of ``../shared/models`` by name (``mnist_conv_small_nat``, see
  ``models.PRETRAINED``) or by its file;
- any other state dict (``.pth`` / ``.pt``) with ``network`` (a zoo network such as
  ``conv_small``, or ``package.module:Name`` with ``network_args``) and ``dataset``;
- with ``untrained``, a zoo network by name, freshly initialised.

ONNX files are refused with the reason: auto_LiRPA 0.3 bounds PyTorch modules and has no
ONNX importer, and converting ONNX to PyTorch (onnx2pytorch) is a new dependency that covers
fewer operators than auto_LiRPA's own tracer; exporting from the PyTorch source is the
dependable path.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ..training.checkpoint import (CHECKPOINT, checked_checkpoint, config_of, load_state_checked,
                                   read_weights)
from ..training.config import TrainConfig
from ..training.errors import TrainingError
from ..training.step import build_network

ONNX_REFUSED = ("ONNX files are not supported: auto_LiRPA bounds PyTorch modules and has no "
                "ONNX importer; load the network from its PyTorch source and a state dict "
                "(--network package.module:Name, the .pth file)")


@dataclass
class LoadedModel:
    """A network in eval mode and what is known about it: its ``network`` name (zoo name,
    import path or pretrained name), ``dataset``, a one-line ``description``, the training
    configuration ``cfg`` of a run (None otherwise), the radius ``eps`` it was trained or
    selected at (None if unknown) and ``base``, how ``graft`` rebuilds it (None if it
    cannot)."""

    model: nn.Module
    network: str
    dataset: str
    description: str
    cfg: TrainConfig | None = None
    eps: float | None = None
    base: dict | None = None


def load_model(source, network: str | None = None, network_args: dict | None = None,
               dataset: str | None = None, untrained: bool = False) -> LoadedModel:
    """The network ``source`` names (see the module docstring). ``dataset`` that contradicts
    what the source says is a ValueError; an unreadable file a ``CheckpointError``; a
    source that is nothing of the above a FileNotFoundError listing what is accepted."""
    path = Path(source)
    if path.is_dir():
        return from_directory(path, dataset)
    if path.is_file():
        return from_file(path, network, network_args, dataset)
    from ..models.pretrained import PRETRAINED
    if str(source) in PRETRAINED:
        return pretrained(str(source), dataset)
    if untrained:
        return fresh(str(source), network_args, dataset)
    if is_zoo_name(str(source)):
        raise ValueError(f"{source} is a zoo network, not a pretrained network "
                         f"({', '.join(PRETRAINED)}): give its weights, a state-dict file, "
                         f"with --network {source} (plot layers: --checkpoint FILE)")
    raise FileNotFoundError(
        f"{source} not found: it is neither a run directory, a checkpoint or state-dict file, "
        f"nor a pretrained network ({', '.join(PRETRAINED)})")


def is_zoo_name(name: str) -> bool:
    """Whether ``name`` names a network of the zoo (any accepted spelling)."""
    from .. import models
    try:
        models.canonical_name(name)
    except ValueError:
        return False
    return True


def agreed(known: str, dataset: str | None, what: str) -> str:
    """``known``, the dataset of ``what``; a different ``dataset`` asked for is a ValueError."""
    if dataset not in (None, known):
        raise ValueError(f"{what} is a {known} network, not {dataset}")
    return known


def from_directory(path: Path, dataset: str | None) -> LoadedModel:
    """A training run directory (``checkpoint.pt``) or a ``graft`` output (``grafted.pt``)."""
    from ..grafting.checkpoint import GRAFTED_FILE
    for name in (CHECKPOINT, GRAFTED_FILE):
        if (path / name).is_file():
            return from_file(path / name, None, None, dataset)
    raise FileNotFoundError(f"{path} holds neither {CHECKPOINT} (a training run) nor "
                            f"{GRAFTED_FILE} (a graft output)")


def from_file(path: Path, network: str | None, network_args: dict | None,
              dataset: str | None) -> LoadedModel:
    """A checkpoint of ``train`` or ``graft``, a pretrained file, or a state dict for
    ``network``."""
    from ..grafting.checkpoint import is_grafted_checkpoint
    if path.suffix.lower() == ".onnx":
        raise ValueError(f"{path}: {ONNX_REFUSED}")
    ckpt = read_weights(path, "a lirpa-diffai checkpoint or a PyTorch state dict")
    if is_grafted_checkpoint(ckpt):
        return grafted(ckpt, path, dataset)
    if isinstance(ckpt, dict) and "config_text" in ckpt:
        return trained(checked_checkpoint(ckpt, path), path, dataset)
    if network is not None:
        return state_dict_for(network, network_args, ckpt, path, dataset)
    from ..models.pretrained import PRETRAINED
    if path.stem in PRETRAINED:
        return pretrained(path.stem, dataset, path)
    raise ValueError(f"{path} is not a lirpa-diffai checkpoint: it lacks the configuration "
                     f"(config_text) that names its network; for a state dict give --network "
                     f"(a zoo network such as conv_small, or package.module:Name with "
                     f"--network-args) and --dataset, or name a pretrained network "
                     f"({', '.join(PRETRAINED)})")


def trained(ckpt: dict, path: Path, dataset: str | None) -> LoadedModel:
    """A training checkpoint: the configuration's network with its weights, keys checked."""
    cfg = config_of(ckpt)
    model = build_network(cfg)
    load_state_checked(model, ckpt["state_dict"], cfg.network)
    smoke = f", a smoke run of {ckpt['smoke']['steps']} steps" if "smoke" in ckpt else ""
    return LoadedModel(model.eval(), cfg.network,
                       agreed(cfg.dataset, dataset, f"{path}'s {cfg.network}"),
                       f"{cfg.network} ({path.name}{smoke})", cfg, cfg.eps,
                       {"kind": "zoo", "network": cfg.network, "dataset": cfg.dataset})


def grafted(ckpt: dict, path: Path, dataset: str | None) -> LoadedModel:
    """A grafted checkpoint; its configuration has the network, dataset and selection eps."""
    from ..goals import Point
    from ..grafting.checkpoint import network_from
    from ..grafting.rewrite import GraftingError
    try:
        model = network_from(ckpt, str(path))
    except GraftingError as err:
        raise TrainingError(str(err)) from None
    cfg = TrainConfig(network=ckpt["network"], dataset=ckpt["dataset"], eps=ckpt["eps"],
                      goal=Point(), epochs=1, graft=str(path), source=str(path))
    return LoadedModel(model, cfg.network, agreed(cfg.dataset, dataset, str(path)),
                       f"grafted {cfg.network} ({path})", cfg, cfg.eps)


def pretrained(name: str, dataset: str | None, path: Path | None = None) -> LoadedModel:
    """A network of ``models.PRETRAINED``, from ``../shared/models`` or from ``path``."""
    from ..models.pretrained import PRETRAINED, load_pretrained
    model = load_pretrained(path or name)
    return LoadedModel(model, name, agreed(PRETRAINED[name].dataset, dataset, name),
                       name if path is None else f"{name} ({path})",
                       base={"kind": "pretrained", "name": name})


def network_name(network: str) -> str:
    """A zoo name in its canonical spelling; an import path as it is."""
    from .. import models
    from ..models import custom
    return network if custom.is_import_path(network) else models.canonical_name(network)


def default_dataset(network: str, dataset: str | None) -> str:
    """``dataset``, else the zoo network's first; an import path needs it given."""
    from ..models import custom
    from ..models.registry import ZOO
    if dataset is not None:
        return dataset
    if custom.is_import_path(network):
        raise ValueError(f"give --dataset for the network {network} (mnist or cifar10)")
    return ZOO[network].datasets[0]


def state_dict_for(network: str, network_args: dict | None, ckpt, path: Path,
                   dataset: str | None) -> LoadedModel:
    """The state dict in ``ckpt`` loaded into ``network`` (keys and shapes checked)."""
    from .. import models
    from ..models.pretrained import state_dict_of
    network = network_name(network)
    dataset = default_dataset(network, dataset)
    model = models.build(network, dataset, network_args)
    load_state_checked(model, state_dict_of(ckpt), network)
    base = None if network_args else {"kind": "zoo", "network": network, "dataset": dataset}
    return LoadedModel(model.eval(), network, dataset, f"{network} ({path.name})", base=base)


def fresh(network: str, network_args: dict | None, dataset: str | None) -> LoadedModel:
    """A freshly initialised zoo network (or ``package.module:Name``)."""
    from .. import models
    network = network_name(network)
    dataset = default_dataset(network, dataset)
    return LoadedModel(models.build(network, dataset, network_args).eval(), network, dataset,
                       f"{network} (untrained)")


def evaluation_config(loaded: LoadedModel, eps: float | None) -> TrainConfig:
    """The configuration ``certify`` evaluates with: the run's, else one with the network,
    dataset and ``eps`` (needed: a network without a training run has no configured eps)."""
    if loaded.cfg is not None:
        return loaded.cfg
    if eps is None:
        raise ValueError(f"give --eps: {loaded.description} is not a training run, so it has "
                         "no configured eps")
    from ..goals import Point
    return TrainConfig(network=loaded.network, dataset=loaded.dataset, eps=eps, goal=Point(),
                       epochs=1, source=loaded.description)


def load_trained(source) -> tuple[nn.Module, TrainConfig]:
    """``(model in eval mode, cfg)`` of a training run or grafted checkpoint (what ``train``
    and ``graft`` write)."""
    loaded = load_model(source)
    if loaded.cfg is None:
        raise TrainingError(f"{source} is not a lirpa-diffai checkpoint (write one with "
                            "`python -m lirpa_diffai train` or `graft`)")
    return loaded.model, loaded.cfg


def load_network(name: str, checkpoint=None, dataset: str | None = None,
                 untrained: bool = False, network_args: dict | None = None
                 ) -> tuple[nn.Module, str, str]:
    """``(network in eval mode, dataset, description)`` as ``plot layers`` and
    ``examples/compare_bounds.py`` name it: ``checkpoint`` (any source of
    :func:`load_model`; a state dict for the network ``name``), else ``name`` itself (any
    source of :func:`load_model`)."""
    if checkpoint is None:
        loaded = load_model(name, dataset=dataset, untrained=untrained,
                            network_args=network_args)
    else:
        if not Path(checkpoint).exists():
            raise FileNotFoundError(f"checkpoint {checkpoint} not found")
        loaded = load_model(checkpoint, network=name, network_args=network_args,
                            dataset=dataset)
    return loaded.model, loaded.dataset, loaded.description
