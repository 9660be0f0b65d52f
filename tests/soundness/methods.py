"""Every bound method ``lirpa_diffai.BoundedModule`` exposes, as the fuzzer runs it."""
from __future__ import annotations

from dataclasses import dataclass, field

from lirpa_diffai.bounded_module import HZONO_METHODS

# few alpha-CROWN iterations: the fuzzer checks soundness, not tightness
OPTIMIZE = {"iteration": 3}


@dataclass(frozen=True)
class Method:
    """``compute_bounds(method=method)`` on a BoundedModule built with ``bound_opts``;
    ``zonotope_input``: the input is a ``PerturbationHybridZonotope`` instead of an L-inf ball."""

    label: str
    method: str
    bound_opts: dict = field(default_factory=dict, hash=False, compare=False)
    zonotope_input: bool = False


def hzono_variants() -> list[Method]:
    """``method="hzono"`` with each ReLU variant and input rows 0, k = 2 and ``"all"``, and the
    named ReLU variants ``HBox`` / ``HNIPS`` / ``HSwitch`` / ``HSmooth``."""
    relus = [relu for relu in HZONO_METHODS.values() if relu is not None]
    out = [Method(f"hzono[{relu},rows={rows}]", "hzono", {"hzono": {"relu": relu, "correlate_input": rows}})
           for relu in relus for rows in (0, 2, "all")]
    names = {"boxy": "HBox", "deepz": "HNIPS", "switch": "HSwitch", "smooth": "HSmooth"}
    assert set(names) == set(relus), "a new hzono ReLU variant needs its named method here"
    out += [Method(names[relu], names[relu]) for relu in relus]
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
        Method("zono-input:hzono[deepz,rows=all]", "hzono",
               {"hzono": {"relu": "deepz", "correlate_input": "all"}}, zonotope_input=True),
        Method("zono-input:IBP", "IBP", zonotope_input=True),
        Method("zono-input:CROWN", "CROWN", zonotope_input=True),
        Method("zono-input:CROWN-hzono", "CROWN-hzono", zonotope_input=True),
    ]


METHODS = {m.label: m for m in all_methods()}

# the quick subset: one method per family
QUICK = ["hzono[boxy,rows=0]", "hzono[deepz,rows=all]", "HSwitch", "CROWN-hzono", "IBP", "CROWN",
         "CROWN-IBP", "alpha-CROWN", "zono-input:CROWN"]
