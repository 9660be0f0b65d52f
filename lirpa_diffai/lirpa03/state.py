"""What a bound pass must leave as it found it: auto_LiRPA 0.3 changes the default dtype's
rounding, the network's ``requires_grad`` flags, its train/eval flags and its buffers as side
effects; each context manager here restores one of them."""
from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def default_dtype_of(x):
    """torch's default dtype set to the inputs' floating dtype inside the block: auto_LiRPA
    0.3's alpha-CROWN casts its final bounds to the default dtype, which rounded a float64
    network's bounds to float32."""
    inputs = [t for t in (x or ()) if torch.is_tensor(t) and t.is_floating_point()]
    before = torch.get_default_dtype()
    if inputs and inputs[0].dtype in (torch.float32, torch.float64) and inputs[0].dtype != before:
        torch.set_default_dtype(inputs[0].dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


@contextlib.contextmanager
def keep_requires_grad(parameters):
    """Restore the ``requires_grad`` of ``parameters`` on exit. auto_LiRPA 0.3's parameter nodes
    call ``param.requires_grad_(node.training)`` on the network's own (shared) parameters at
    every pass, so bounding in eval mode silently froze the network being trained, and a
    training-mode pass unfroze the layers a user had frozen."""
    flags = [(p, p.requires_grad) for p in parameters]
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@contextlib.contextmanager
def keep_modes_and_buffers(model):
    """Restore the train/eval flag of every submodule of ``model``, and its buffers (BatchNorm
    statistics), on exit. auto_LiRPA 0.3 switches the user's network to ``train()`` when it
    holds Dropout (and to ``eval()`` with BatchNorm1d), and runs it in training mode without
    restoring its statistics when it holds BatchNorm1d."""
    flags = [(m, m.training) for m in model.modules()]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag
        with torch.no_grad():
            for b, saved in buffers:
                if not holds_already(b, saved):  # an equal copy would only bump its version
                    b.copy_(saved)


@contextlib.contextmanager
def eval_mode(*modules):
    """Every submodule of ``modules`` in eval mode inside the block; each one's own flag after."""
    flags = [(m, m.training) for module in modules for m in module.modules()]
    try:
        for module in modules:
            module.eval()
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def holds_already(tensor: torch.Tensor, value) -> bool:
    """Whether copying ``value`` into ``tensor`` would change nothing (``copy_`` of equal
    values still bumps the version counter, which breaks a backward pass that saved it)."""
    return torch.is_tensor(value) and value.shape == tensor.shape and value.dtype == tensor.dtype \
        and bool(torch.equal(value, tensor))
