"""Every bound method ``lirpa_diffai.BoundedModule`` exposes, as the fuzzer runs it: every
method string ``compute_bounds`` accepts (auto_LiRPA's aliases ``IBP+CROWN``, ``backward`` and
``forward+CROWN`` run the same code as one listed)."""
from __future__ import annotations

from dataclasses import dataclass, field

from lirpa_diffai.domain.methods import DIFFAI_NAMES
from lirpa_diffai.hybrid_zono import RELU_VARIANTS

# few alpha-CROWN iterations: the fuzzer checks soundness, not tightness
OPTIMIZE = {"iteration": 3}

# the options a named domain needs (HRand: how many random input rows)
NAMED_OPTIONS = {"HRand": {"hzono": {"correlate_input": "random:2"}}}


@dataclass(frozen=True)
class Method:
    """``compute_bounds(method=method)`` on a BoundedModule built with ``bound_opts``;
    ``zonotope_input``: the input is a ``PerturbationHybridZonotope`` instead of an L-inf ball."""

    label: str
    method: str
    bound_opts: dict = field(default_factory=dict, hash=False, compare=False)
    zonotope_input: bool = False


def hzono_variants() -> list[Method]:
    """``method="hzono"`` with each ReLU variant and input rows 0, k = 2 and ``"all"``, DeepT's
    pairwise softmax bound (the default is the shifted one), and every DiffAI domain name
    (``Box``, ``HBox`` ... ``ZNIPS``, ``HRand``): the hybrid and the pure zonotope domains."""
    out = [Method(f"hzono[{relu},rows={rows}]", "hzono", {"hzono": {"relu": relu, "correlate_input": rows}})
           for relu in RELU_VARIANTS for rows in (0, 2, "all")]
    out += [Method(name, name, NAMED_OPTIONS.get(name, {})) for name in DIFFAI_NAMES]
    out.append(Method("hzono[deepz,rows=all,softmax=pairwise]", "hzono",
                      {"hzono": {"relu": "deepz", "correlate_input": "all", "softmax": "pairwise"}}))
    return out


def all_methods() -> list[Method]:
    """hzono's variants, the combined methods, auto_LiRPA's, and a zonotope input for each
    method family that accepts it (hzono, IBP, CROWN, CROWN-hzono)."""
    optimize = {"optimize_bound_args": OPTIMIZE}
    return hzono_variants() + [
        Method("CROWN-hzono", "CROWN-hzono"),
        Method("alpha-CROWN-hzono", "alpha-CROWN-hzono", optimize),
        Method("IBP", "IBP"),
        Method("CROWN", "CROWN"),
        Method("CROWN-IBP", "CROWN-IBP"),
        Method("alpha-CROWN", "alpha-CROWN", optimize),
        Method("CROWN-Optimized", "CROWN-Optimized", optimize),
        Method("IBP+backward", "IBP+backward"),
        Method("forward", "forward"),
        Method("forward+backward", "forward+backward"),
        Method("forward-optimized", "forward-optimized", optimize),
        Method("zono-input:hzono[deepz,rows=all]", "hzono",
               {"hzono": {"relu": "deepz", "correlate_input": "all"}}, zonotope_input=True),
        Method("zono-input:IBP", "IBP", zonotope_input=True),
        Method("zono-input:CROWN", "CROWN", zonotope_input=True),
        Method("zono-input:CROWN-hzono", "CROWN-hzono", zonotope_input=True),
    ]


METHODS = {m.label: m for m in all_methods()}

# one fixed method per family (the pretrained networks and the changed graphs run these; the
# operator grid's quick tier draws its own per operator: tests/soundness/tiers.py)
QUICK = ["hzono[boxy,rows=0]", "hzono[deepz,rows=all]", "ZSwitch", "CROWN-hzono", "IBP", "CROWN",
         "CROWN-IBP", "alpha-CROWN", "zono-input:CROWN", "forward", "forward+backward"]
