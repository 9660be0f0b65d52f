"""Fixes for auto_LiRPA 0.3's element-selecting operators, ``Gather`` (``index_select``,
``x[:, i]``, the shape arithmetic ``chunk`` traces into), ``Split`` and ``Expand``, and for the
integer division of that shape arithmetic; :mod:`.manifest` applies them.

Each operator is linear with 0/1 coefficients: ``y = J x`` with ``J`` a constant selection
(``Gather``, ``Split``) or copy (``Expand``) matrix. IBP takes ``[J l, J u]`` (exact, ``J >= 0``),
CROWN the exact transpose ``A -> A J`` (coefficients scattered back, summed where an element is
read several times) and the forward mode ``J`` applied to each linear bound.
"""
from __future__ import annotations

from .fix import fix


def normalised_indices(indices, size: int):
    """ONNX ``Gather``'s constant indices as non-negative ``long`` indices: a negative index
    counts from the end of an axis of ``size`` (``x[:, -1]``)."""
    import torch
    index = torch.as_tensor(indices).long()
    return torch.where(index < 0, index + int(size), index)


def gather(x, axis: int, indices):
    """ONNX ``Gather``: ``x`` indexed along ``axis`` by ``indices`` of any shape; the result's
    shape is ``x.shape[:axis] + indices.shape + x.shape[axis + 1:]``."""
    index = normalised_indices(indices, x.shape[axis]).to(x.device)
    picked = x.index_select(axis, index.reshape(-1))
    return picked.reshape(tuple(x.shape[:axis]) + tuple(index.shape) + tuple(x.shape[axis + 1:]))


def scatter_back(A, axis: int, indices, input_shape):
    """The transpose of :func:`gather` on coefficients ``A`` (spec, B, *output_shape[1:]):
    each output element's coefficient added to the input element it reads (``index_add``, so
    an element gathered twice gets both)."""
    index = normalised_indices(indices, input_shape[axis]).to(A.device)
    dim = axis + 1
    rows = A.reshape(tuple(A.shape[:dim]) + (index.numel(),) + tuple(A.shape[dim + index.dim():]))
    zeros = A.new_zeros(tuple(A.shape[:2]) + tuple(input_shape[1:]))
    return zeros.index_add(dim, index.reshape(-1), rows)


def channel_patches_spread(A, channels: int, index):
    """``Patches`` coefficients of a channel selection (``Slice``, ``Split``, ``Gather`` on axis
    1 of a 4-d value) on all ``channels`` of its input: each selected channel's coefficients at
    its index, added where a channel is selected twice, zeros elsewhere (the exact transpose).
    Their input-channel axis is the third last whether or not they hold unstable neurons only."""
    p = A.patches
    zeros = p.new_zeros(p.shape[:-3] + (channels,) + p.shape[-2:])
    return A.create_similar(zeros.index_add(p.dim() - 3, index.to(p.device), p))


def node_axis(node, ndim: int) -> int:
    return int(node.axis) % ndim


@fix(test="test_gather_with_any_indices_is_bounded_by_every_method")
def gather_any_indices():
    """auto_LiRPA 0.3 bugs in ``BoundGather``: ``forward`` reshapes a gather along axis 0 as if
    the data were 2-d, so the ``Gather`` that ``chunk`` traces into (an entry of the input's
    shape) fails and every method refused ShuffleNetV2; negative indices (``x[:, -1]``,
    ``x[:, [-1, 1]]``) fail; CROWN's backward pass scatters the coefficients with ``scatter_``,
    so ``index_select`` with a repeated index kept one of its coefficients (bounds that miss
    ``f(x)`` even at eps = 0); the forward mode takes scalar indices only. ``forward`` is now
    ONNX's ``Gather`` (any indices' shape, negative indices from the end), the backward pass
    its exact transpose (:func:`scatter_back`; ``Patches`` of a channel gather stay patches,
    others are made dense) and the forward mode gathers each linear bound."""
    from auto_LiRPA.linear_bound import LinearBound
    from auto_LiRPA.operators import BoundGather
    from auto_LiRPA.patches import Patches

    from .fixes_linear import dense_coefficients
    bound_forward = BoundGather.bound_forward

    def forward(self, x, indices):
        self.indices = indices
        self.axis = node_axis(self, x.dim())
        return gather(x, self.axis, indices)

    def bound_backward(self, last_lA, last_uA, x, indices):
        axis = node_axis(self, len(self.input_shape))

        def transpose(A):
            if A is None:
                return None
            if (isinstance(A, Patches) and axis == 1 and len(self.input_shape) == 4
                    and self.indices.dim() <= 1 and A.patches.shape[-3] == self.indices.numel()):
                return channel_patches_spread(A, self.input_shape[1],
                                              normalised_indices(self.indices, self.input_shape[1]).reshape(-1))
            return scatter_back(dense_coefficients(A, self.output_shape), axis, self.indices, self.input_shape)
        return [(transpose(last_lA), transpose(last_uA)), (None, None)], 0, 0

    def forward_mode(self, dim_in, x, indices):
        if not isinstance(x, LinearBound):
            return bound_forward(self, dim_in, x, indices)
        axis = node_axis(self, x.lb.dim())
        return LinearBound(gather(x.lw, axis + 1, self.indices), gather(x.lb, axis, self.indices),
                           gather(x.uw, axis + 1, self.indices), gather(x.ub, axis, self.indices))
    return {(BoundGather, "forward"): forward, (BoundGather, "bound_backward"): bound_backward,
            (BoundGather, "bound_forward"): forward_mode}


@fix(test="test_gather_with_any_indices_is_bounded_by_every_method",
     after=("division_interval", "layer_norm_division_as_traced"))
def integer_division_forward():
    """auto_LiRPA 0.3's ``BoundDiv`` divides integer tensors as floats (in ``forward`` and in
    IBP), but ONNX's ``Div`` of integers truncates: the split size that ``chunk`` traces into,
    ``(size + chunks - 1) / chunks``, became 2.5 for 4 channels in 2 chunks, and the ``Slice``
    after it failed. Integer operands (shape arithmetic, never a perturbed value) are divided
    with truncation, their interval being that one value."""
    import torch
    from auto_LiRPA.operators import BoundDiv
    forward, interval_propagate = BoundDiv.forward, BoundDiv.interval_propagate

    def integer(value) -> bool:
        return torch.is_tensor(value) and not value.is_floating_point() and not value.is_complex()

    def divide(self, x, y):
        if integer(x) and integer(y):
            return torch.div(x, y, rounding_mode="trunc")
        return forward(self, x, y)

    def interval(self, *v):
        (xl, xu), (yl, yu) = v
        if all(integer(t) for t in (xl, xu, yl, yu)) and torch.equal(xl, xu) and torch.equal(yl, yu):
            value = torch.div(xl, yl, rounding_mode="trunc")
            return value, value
        return interval_propagate(self, *v)
    return {(BoundDiv, "forward"): divide, (BoundDiv, "interval_propagate"): interval}


@fix(test="test_gather_with_any_indices_is_bounded_by_every_method")
def product_of_two_constants_interval():
    """auto_LiRPA 0.3 bug: IBP of ``Mul`` (and ``Div``) with a constant operand takes an interval
    whose two ends are one object for a constant, and when both operands are, it multiplies the
    first by itself: the ``chunk`` shape arithmetic ``(size + 1) / 2 * 1`` gave 4 for 2 and
    the ``Slice`` after it selected other channels (IBP's bounds missed ``f(x)``). Two constant
    operands give their exact product."""
    from auto_LiRPA.operators import BoundMul
    interval_propagate_constant = BoundMul.interval_propagate_constant

    def interval(*v, op=lambda x, const: x * const):
        (xl, xu), (yl, yu) = v[0], v[1]
        if xl is xu and yl is yu:
            value = op(xl, yl)
            return value, value
        return interval_propagate_constant(*v, op=op)
    return {(BoundMul, "interval_propagate_constant"): staticmethod(interval)}


@fix(test="test_gather_with_any_indices_is_bounded_by_every_method", after=("slice_any_step",))
def slice_computed_endpoints():
    """auto_LiRPA 0.3's ``Slice`` backward pass reads its start, end, axis and step from the
    ``value`` of their nodes, which is set only for nodes that do not depend on the input: the
    ends ``chunk`` computes from the input's shape (``Shape``, ``Gather``, ``Div``) had none, and
    CROWN scattered the coefficients to other channels or failed. The forward pass records the
    four numbers it sliced with; the backward pass reads those. ``Patches`` of a channel slice
    with step 1 are spread to the input's channels (:func:`channel_patches_spread`) also when
    they hold unstable neurons only (auto_LiRPA asserted that away: ``x[:, -1:]``)."""
    import types

    import torch
    from auto_LiRPA.operators import BoundSlice
    from auto_LiRPA.patches import Patches

    from .fixes_activations import slice_range
    forward, backward = BoundSlice.forward, BoundSlice.bound_backward

    def recording_forward(self, x, *params):
        self.slice_params = [int(torch.as_tensor(p).reshape(-1)[0]) for p in params]
        return forward(self, x, *params)

    def bound_backward(self, last_lA, last_uA, *x):
        recorded = getattr(self, "slice_params", None)
        if recorded is None or len(recorded) != len(x) - 1:
            return backward(self, last_lA, last_uA, *x)
        start, end, axes, steps = (recorded + [1])[:4]
        some = last_lA if last_lA is not None else last_uA
        if (isinstance(some, Patches) and steps == 1 and axes % 4 == 1 and len(self.input_shape) == 4):
            selected = slice_range(self.input_shape[1], start, end, 1)
            index = torch.arange(selected.start, selected.stop)
            return [tuple(None if A is None else channel_patches_spread(A, self.input_shape[1], index)
                          for A in (last_lA, last_uA))] + [(None, None)] * (len(x) - 1), 0, 0
        x = (x[0],) + tuple(types.SimpleNamespace(value=torch.tensor(p)) for p in recorded)
        return backward(self, last_lA, last_uA, *x)
    return {(BoundSlice, "forward"): recording_forward, (BoundSlice, "bound_backward"): bound_backward}


@fix(test="test_split_and_expand_are_bounded_by_every_method", after=("overflow_never_nan",))
def unperturbed_nodes_by_value():
    """auto_LiRPA 0.3's IBP takes an unperturbed node's value as its interval only where the node
    kept its ``forward_value``; the shape arithmetic that ``x.expand(-1, 4, -1, -1)`` traces into
    (``ConstantOfShape``, ``Equal``, ``Where``) had none, and IBP asked ``Equal`` for an interval
    it has no rule for, so IBP and CROWN refused ``expand``. An unperturbed node without an
    interval is evaluated (``get_forward_value``, its inputs being unperturbed too) and takes
    that one value as its interval."""
    from auto_LiRPA import BoundedModule
    ibp = BoundedModule.IBP_general

    def IBP_general(self, node=None, C=None, *args, **kwargs):
        if (node is not None and not node.perturbed and not hasattr(node, "interval")
                and getattr(node, "forward_value", None) is None):
            value = self.get_forward_value(node)
            node.lower = node.upper = value
            node.interval = (value, value)
        return ibp(self, node, C, *args, **kwargs)
    return {(BoundedModule, "IBP_general"): IBP_general}


def expanded_axes(input_shape, output_shape) -> list[int]:
    """The axes (batch first, equal ranks) along which ``Expand`` copies a size-1 input."""
    return [i for i, (a, b) in enumerate(zip(input_shape, output_shape)) if a == 1 and b != 1]


@fix(test="test_split_and_expand_are_bounded_by_every_method")
def expand_bounds():
    """auto_LiRPA 0.3's ``BoundExpand`` (``x.expand(...)``, ``expand_as``) has a ``forward``
    only: IBP, CROWN and the forward mode refused it. It copies each element of a size-1 axis:
    IBP expands both bounds, CROWN's transpose sums the coefficients over the copies (a
    channel-only copy keeps ``Patches``: summed over their input channel) and the forward mode
    expands each linear bound (bounds as contiguous tensors: auto_LiRPA views them). A perturbed
    input of lower rank, or copied along the batch axis, is refused by node."""
    from auto_LiRPA.linear_bound import LinearBound
    from auto_LiRPA.operators import BoundExpand
    from auto_LiRPA.patches import Patches

    from .fixes_linear import dense_coefficients

    def checked_axes(node, input_shape, output_shape) -> list[int]:
        if len(input_shape) != len(output_shape) or 0 in expanded_axes(input_shape, output_shape):
            raise NotImplementedError(
                f"graph node '{node.name}' (operator Expand, BoundExpand) expands a perturbed value of shape "
                f"{tuple(input_shape)} to {tuple(output_shape)}: only axes after the batch axis are supported")
        return expanded_axes(input_shape, output_shape)

    def interval_propagate(self, *v):
        shape = v[1][0]   # contiguous copies: auto_LiRPA views intermediate bounds
        return self.forward(v[0][0], shape).contiguous(), self.forward(v[0][1], shape).contiguous()

    def bound_backward(self, last_lA, last_uA, x, y):
        axes = checked_axes(self, self.input_shape, self.output_shape)

        def transpose(A):
            if A is None or not axes:
                return A
            if isinstance(A, Patches) and axes == [1] and len(self.input_shape) == 4:
                return A.create_similar(A.patches.sum(-3, keepdim=True))
            return dense_coefficients(A, self.output_shape).sum([a + 1 for a in axes], keepdim=True)
        return [(transpose(last_lA), transpose(last_uA)), (None, None)], 0, 0

    def bound_forward(self, dim_in, x, y):
        shape = tuple(self.output_shape)
        checked_axes(self, x.lb.shape, shape)
        with_inputs = (shape[0], x.lw.shape[1]) + shape[1:]
        return LinearBound(*(t.expand(size).contiguous() for t, size in
                             ((x.lw, with_inputs), (x.lb, shape), (x.uw, with_inputs), (x.ub, shape))))
    return {(BoundExpand, "interval_propagate"): interval_propagate,
            (BoundExpand, "bound_backward"): bound_backward, (BoundExpand, "bound_forward"): bound_forward}


@fix(test="test_split_and_expand_are_bounded_by_every_method")
def split_backward_patches():
    """auto_LiRPA 0.3's ``BoundSplit`` backward pass (``torch.split``, ``chunk``, ``unbind``)
    concatenates zeros to dense coefficients only: ``Patches`` (a convolution after a channel
    split) failed. A channel split's patches get zeros on their input channels around the
    part; patches of another split are made dense."""
    import torch
    from auto_LiRPA.operators import BoundSplit
    from auto_LiRPA.patches import Patches

    from .fixes_linear import dense_pair
    backward = BoundSplit.bound_backward

    def bound_backward(self, last_lA, last_uA, x):
        some = last_lA if last_lA is not None else last_uA
        if not isinstance(some, Patches):
            return backward(self, last_lA, last_uA, x)
        if int(self.axis) % len(self.input_shape) != 1 or len(self.input_shape) != 4:
            return backward(self, *dense_pair(self, last_lA, last_uA), x)
        start = sum(self.split[:self.output_index])
        index = torch.arange(start, start + self.split[self.output_index])
        return [tuple(None if A is None else channel_patches_spread(A, self.input_shape[1], index)
                      for A in (last_lA, last_uA))], 0, 0
    return {(BoundSplit, "bound_backward"): bound_backward}
