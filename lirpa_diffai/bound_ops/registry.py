"""The hzono domain as one table: auto_LiRPA Bound class -> hybrid-zonotope transformer.

A transformer is ``fn(ctx, node, *inputs) -> HybridZonotope | Concatenation | Tensor`` where
each input is a :class:`~lirpa_diffai.hybrid_zono.HybridZonotope` (a perturbed value) or the
node's concrete input (a constant: weights, shapes, ...). It is called only when some input is
perturbed. A transformer registered with ``reads_parts=True`` also takes a
:class:`Concatenation` as it is; every other one gets it joined.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import Callable, Union

import torch

from .. import hybrid_zono as hz
from ..errors import UnsupportedOperatorError, operator_name

HZONO_TRANSFORMERS: dict[type, Callable] = {}


def register(*bound_classes: type, reads_parts: bool = False):
    """Decorator: make ``fn`` the hzono transformer of exactly ``bound_classes`` (a subclass
    is not covered: auto_LiRPA's ``BoundAtan`` subclasses ``BoundTanh`` but computes another
    function). ``reads_parts``: ``fn`` takes a :class:`Concatenation` input as its parts,
    without joining them."""
    def decorate(fn):
        fn.reads_parts = reads_parts
        for cls in bound_classes:
            HZONO_TRANSFORMERS[cls] = fn
        return fn
    return decorate


def transformer_for(node) -> Callable:
    """The transformer registered for the node's exact Bound class; a class without its own
    entry is refused, whatever its base classes (a subclass overrides ``forward``)."""
    transformer = HZONO_TRANSFORMERS.get(type(node))
    if transformer is not None:
        return transformer
    onnx_op = operator_name(node)
    registered_base = next((c.__name__ for c in type(node).__mro__[1:] if c in HZONO_TRANSFORMERS), None)
    why = (f"; it subclasses {registered_base}, whose transformer bounds another function"
           if registered_base else "")
    raise UnsupportedOperatorError(
        f"hzono has no transformer for graph node '{node.name}' (operator {onnx_op}, "
        f"bound class {type(node).__name__}){why}; supported: "
        + ", ".join(sorted(c.__name__ for c in HZONO_TRANSFORMERS)))


class IdentityMemo:
    """A mapping keyed by object identity that holds no reference to its keys: an entry goes
    when its key object is garbage collected (so a recycled ``id`` never finds a stale entry)."""

    def __init__(self):
        self._entries: dict = {}  # id(key) -> (weakref to key, value)

    def get(self, key, default=None):
        entry = self._entries.get(id(key))
        return entry[1] if entry is not None and entry[0]() is key else default

    def __setitem__(self, key, value) -> None:
        def forget(ref, ident=id(key), entries=self._entries):
            if entries.get(ident, (None,))[0] is ref:
                del entries[ident]
        self._entries[id(key)] = (weakref.ref(key, forget), value)

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True, eq=False)  # identity semantics: parts are memo keys
class Concatenation:
    """A perturbed value that is ``cat(parts, axis)``, kept as its parts until a transformer
    that is not registered with ``reads_parts`` needs the joined zonotope (``joined``, built
    once). In a DenseNet block a concatenation is read by a ReLU (which maps its parts) and by
    the next layer's concatenation (which takes its parts), so it is never joined; only the
    ReLU's image, read by a convolution, is."""

    parts: tuple
    axis: int

    @property
    def shape(self) -> torch.Size:
        shape = list(self.parts[0].shape)
        shape[self.axis] = sum(part.shape[self.axis] for part in self.parts)
        return torch.Size(shape)

    @cached_property
    def joined(self) -> hz.HybridZonotope:
        return hz.concat(self.parts, partial(torch.cat, dim=self.axis))

    def concretize(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The joined zonotope's bounds, from the parts (without joining them)."""
        lower, upper = zip(*(part.concretize() for part in self.parts))
        return torch.cat(lower, self.axis), torch.cat(upper, self.axis)

    @staticmethod
    def of(values, axis: int) -> "Concatenation":
        """``cat(values, axis)``; a value that is itself a concatenation along ``axis``
        contributes its own parts, one along another axis is joined first (every part is a
        zonotope)."""
        parts = []
        for value in values:
            if isinstance(value, Concatenation):
                parts.extend(value.parts if value.axis == axis else (value.joined,))
            else:
                parts.append(value)
        return Concatenation(tuple(parts), axis)


def joined(value: Union[hz.HybridZonotope, Concatenation, torch.Tensor]):
    """``value`` with a :class:`Concatenation` joined into one zonotope."""
    return value.joined if isinstance(value, Concatenation) else value


def is_perturbed(value) -> bool:
    """Whether a value of the pass is a zonotope (joined or not) rather than a constant."""
    return isinstance(value, (hz.HybridZonotope, Concatenation))


@dataclass
class HzonoContext:
    """What transformers may read or record during one hzono pass."""

    relu: str = "boxy"
    softmax: str = "shifted"      # softmax bound: shifted | pairwise (bound_ops.attention)
    training: bool = False
    input_rows: object = 0        # correlate_input of the input elements
    pure_input: bool = False      # whether the input elements are pure zonotopes
    # node name -> whether its value is a pure zonotope (DiffAI's Zonotope class): a node
    # takes the domain of its first perturbed input, as DiffAI's operators take their left
    # operand's class; ToZono / ToHZono switch it
    pure: dict = field(default_factory=dict)
    aux_losses: list = field(default_factory=list)  # (weight, loss) recorded by DeepLoss
    # elementwise transformer key -> (part -> result), while the part lives
    part_results: dict = field(default_factory=dict)

    def elementwise(self, key, fn: Callable, z):
        """``fn(z)`` for an elementwise transformer ``fn`` (``key`` names it and its options).

        An elementwise map commutes with concatenation, ``f(cat(a, b)) = cat(f(a), f(b))``, so on
        a :class:`Concatenation` ``fn`` runs once per part and its results are reused: in a
        DenseNet block, where each layer's input is the previous input plus a few new channels,
        only the new channels are transformed (and concretized)."""
        if not isinstance(z, Concatenation):
            return fn(z)
        memo = self.part_results.setdefault(key, IdentityMemo())
        results = []
        for part in z.parts:
            result = memo.get(part)
            if result is None:
                result = memo[part] = fn(part)
            results.append(result)
        return Concatenation(tuple(results), z.axis)
