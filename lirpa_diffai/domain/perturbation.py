"""Input sets for hzono, and a perturbation domain whose input set is a hybrid zonotope."""
from __future__ import annotations

import numpy as np
import torch
from auto_LiRPA.patches import Patches
from auto_LiRPA.perturbations import PerturbationLpNorm

from ..hybrid_zono import HybridZonotope


class PerturbationHybridZonotope(PerturbationLpNorm):
    """The input set ``{head + beta*b + sum_j errors_j e_j : b, e in [-1, 1]}``.

    Works with ``method="hzono"`` (the zonotope itself is the input element), with IBP (its
    interval concretization: to auto_LiRPA it is the L-inf box ``x_L, x_U`` around it) and with
    CROWN, where a linear function ``A x`` is concretized exactly:
    ``A head +- (sum_j |A errors_j| + |A| beta)``.
    """

    def __init__(self, zonotope: HybridZonotope):
        lower, upper = zonotope.concretize()
        super().__init__(eps=0.0, norm=np.inf, x_L=lower, x_U=upper)
        self.zonotope = zonotope

    @classmethod
    def from_tensors(cls, head, beta=None, errors=None) -> "PerturbationHybridZonotope":
        beta = torch.zeros_like(head) if beta is None else beta
        if errors is None:
            return cls(HybridZonotope(head, beta))
        return cls(HybridZonotope.from_generators(head, errors, beta))

    def init(self, x, aux=None, forward=False):
        if forward:
            raise NotImplementedError("PerturbationHybridZonotope does not support forward-mode LiRPA")
        return super().init(x, aux, forward)

    def concretize(self, x, A, sign=-1, aux=None, extra_constr=None):
        if A is None:
            return None
        if extra_constr is not None:
            raise NotImplementedError("PerturbationHybridZonotope does not support beta-CROWN constraints")
        z = self.zonotope
        out_shape = None
        if isinstance(A, Patches):
            if A.identity == 1:
                lower, upper = z.concretize()
                return upper if sign == 1 else lower
            if A.unstable_idx is None:  # all S = out_c * out_h * out_w rows, returned as an image
                out_shape = (z.head.shape[0], A.patches.size(0), A.patches.size(2), A.patches.size(3))
            A = A.to_matrix(z.head.shape)  # (B, S, C, H, W)
        A = A.reshape(A.shape[0], A.shape[1], -1).expand(z.head.shape[0], -1, -1)  # (B, S, n)
        head = torch.einsum("bsn,bn->bs", A, z.head.flatten(1))
        spread = torch.einsum("bsn,bn->bs", A.abs(), z.beta.flatten(1))
        if z.errors is not None:
            spread = spread + torch.einsum("bsn,mbn->mbs", A, z.errors.flatten(2)).abs().sum(0)
        bound = head + sign * spread
        return bound if out_shape is None else bound.reshape(out_shape)

    def __repr__(self):
        return (f"PerturbationHybridZonotope(shape={tuple(self.zonotope.shape)}, "
                f"rows={self.zonotope.num_errors})")


def input_zonotope(perturbation, x: torch.Tensor) -> HybridZonotope:
    """The hzono input element of a perturbed input ``x``: an L-inf ball (or the box ``x_L``,
    ``x_U``) becomes a box, a :class:`PerturbationHybridZonotope` its zonotope."""
    if isinstance(perturbation, PerturbationHybridZonotope):
        return perturbation.zonotope
    if isinstance(perturbation, PerturbationLpNorm) and perturbation.norm == np.inf:
        x = x.as_subclass(torch.Tensor)
        lower = x - perturbation.eps if perturbation.x_L is None else perturbation.x_L
        upper = x + perturbation.eps if perturbation.x_U is None else perturbation.x_U
        return HybridZonotope.from_box(torch.as_tensor(lower).as_subclass(torch.Tensor),
                                       torch.as_tensor(upper).as_subclass(torch.Tensor))
    raise NotImplementedError(
        f"hzono supports PerturbationLpNorm(norm=inf) and PerturbationHybridZonotope inputs, "
        f"not {perturbation!r}")
