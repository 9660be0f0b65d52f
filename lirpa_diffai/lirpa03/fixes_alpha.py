"""alpha-CROWN's alphas in auto_LiRPA 0.3: shapes that agree with the coefficients they meet;
:mod:`.manifest` applies them."""
from __future__ import annotations

from .fix import fix


def convolutional(node) -> bool:
    """A start node with more than one axis past the batch (a convolution's ``C x H x W``)."""
    return len(node.output_shape) > 2


@fix(test="test_alpha_crown_bounds_tanh_and_max_pool_after_convolutions")
def alpha_of_activations_shared_over_convolutions():
    """auto_LiRPA 0.3 bug: for an optimisable activation other than ReLU (Tanh in LeNet, a max
    pool in VGG), alpha-CROWN sizes the alphas of a convolutional start node as its ``C x H x
    W`` outputs, or its ``C`` channels where patches were seen, while the backward pass sizes
    the slopes as ``C``: the two disagree (a bare assertion, a size error, or coefficients
    made dense by a later operator meet ``C`` slopes). For these activations, each
    convolutional start node now gets one set of alphas, shared by its outputs (as
    auto_LiRPA's ``use_shared_alpha``), in both places; other start nodes keep theirs. Any
    alpha is sound; the optimisation starts at CROWN's and keeps the best bounds. A start node
    auto_LiRPA still fails an internal check on is refused naming the activation."""
    from auto_LiRPA import BoundedModule
    from auto_LiRPA.operators import BoundOptimizableActivation, BoundRelu
    start_nodes, backward = BoundedModule.get_alpha_crown_start_nodes, BoundOptimizableActivation.bound_backward

    def named(self, node, *args, **kwargs):
        try:
            return start_nodes(self, node, *args, **kwargs)
        except AssertionError:
            later = ", ".join(f"'{n.name}' ({type(n).__name__})" for n in self.backward_from[node.name])
            raise NotImplementedError(
                f"alpha-CROWN: graph node '{node.name}' (operator {type(node).__name__.removeprefix('Bound')}, "
                f"{type(node).__name__}): auto_LiRPA 0.3 cannot create its alphas for the nodes it "
                f"bounds ({later}); use CROWN") from None

    def get_alpha_crown_start_nodes(self, node, *args, **kwargs):
        if isinstance(node, BoundRelu):
            return named(self, node, *args, **kwargs)
        # the sparse-spec checks only concern ReLU's alphas
        sparse = self.bound_opts.get("sparse_intermediate_bounds", False)
        self.bound_opts["sparse_intermediate_bounds"] = False
        try:
            found = named(self, node, *args, **kwargs)
        finally:
            self.bound_opts["sparse_intermediate_bounds"] = sparse
        return [(name, 1 if name != self.final_name and name in self._modules and convolutional(self[name])
                 else shape, index) for name, shape, index in found]

    def bound_backward(self, last_lA, last_uA, x, start_node=None, start_shape=None):
        if start_node is not None and not isinstance(start_shape, int) and convolutional(start_node):
            start_shape = 1
        return backward(self, last_lA, last_uA, x, start_node=start_node, start_shape=start_shape)
    return {(BoundedModule, "get_alpha_crown_start_nodes"): get_alpha_crown_start_nodes,
            (BoundOptimizableActivation, "bound_backward"): bound_backward}


@fix(test="test_alpha_crown_bounds_a_squeeze_excitation_gate_with_stable_relus",
)
def relu_sparse_alphas_on_a_dense_spec():
    """auto_LiRPA 0.3 bug: a ReLU's alphas for a start node can be created sparse in the spec
    (only the start node's unstable outputs get their own, the rest share slot 0), and then be
    used with the start node's bounds computed densely (MobileNetV3's squeeze-excitation gate:
    a bare assertion "Alpha must not be created sparsely"). There, every output now uses
    slot 0, the shared alpha (any alpha in [0, 1] is sound)."""
    from auto_LiRPA.operators import BoundRelu
    relaxation = BoundRelu._backward_relaxation

    def _backward_relaxation(self, last_lA, last_uA, x, start_node, unstable_idx):
        lookup = getattr(self, "alpha_lookup_idx", {}) or {}
        if (self.opt_stage not in ("opt", "reuse") or unstable_idx is not None or start_node is None
                or lookup.get(start_node.name) is None):
            return relaxation(self, last_lA, last_uA, x, start_node, unstable_idx)
        name = start_node.name
        alpha, index = self.alpha[name], lookup[name]
        self.alpha[name], lookup[name] = alpha[:, :1], None
        try:
            return relaxation(self, last_lA, last_uA, x, start_node, unstable_idx)
        finally:
            self.alpha[name], lookup[name] = alpha, index
    return {(BoundRelu, "_backward_relaxation"): _backward_relaxation}
