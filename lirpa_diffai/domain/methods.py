"""DiffAI's domain names as bound methods, meaning what they mean in DiffAI (eth-sri/diffai,
``goals.py``): a name fixes the ReLU transformer, the input element and whether the value is
a hybrid or a pure zonotope. ``hzono`` with ``bound_opts["hzono"]`` is the configurable form.

==========  ================  =====================================  ==============
name        ReLU              input element                          domain
==========  ================  =====================================  ==============
Box         boxy              the box, no rows                       hybrid
HBox        boxy              one row per input dim (``e_i r_i``)    hybrid
HSwitch     switch            one row per input dim                  hybrid
HSmooth     smooth            one row per input dim                  hybrid
HNIPS       deepz             one row per input dim                  hybrid
ZBox        boxy              one row per input dim                  pure zonotope
ZSwitch     switch            one row per input dim                  pure zonotope
ZSmooth     smooth            one row per input dim                  pure zonotope
ZNIPS       deepz             one row per input dim                  pure zonotope
HRand       switch            the box, k random dims with rows       hybrid
hzono       options' relu     options' correlate_input               hybrid
==========  ================  =====================================  ==============

HRand's k is ``bound_opts["hzono"]["correlate_input"] = "random:k"`` (DiffAI's
``HRand(num_correlated)``, whose default domain is HSwitch).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

Rows = Union[int, str]


@dataclass(frozen=True)
class Domain:
    """A named domain: ``relu`` and ``input_rows`` (``None``: taken from the options) and
    ``pure`` (a pure zonotope: the box part becomes rows after every non-linearity)."""

    name: str
    relu: Optional[str]
    input_rows: Optional[Rows]
    pure: bool = False
    random_rows: bool = False   # the options' correlate_input must be "random:k"

    def resolve(self, options: dict) -> tuple[str, Rows, bool]:
        """``(relu, input rows, pure)`` of this domain under ``bound_opts["hzono"]``."""
        rows = options["correlate_input"] if self.input_rows is None else self.input_rows
        if self.random_rows and random_count(rows) is None:
            raise ValueError(f"method {self.name!r} correlates k random input dims: set "
                             f"bound_opts['hzono']['correlate_input'] = 'random:k' (got {rows!r})")
        return self.relu or options["relu"], rows, self.pure


DOMAINS = {d.name.lower(): d for d in (
    Domain("hzono", None, None),
    Domain("Box", "boxy", 0),
    Domain("HBox", "boxy", "all"),
    Domain("HSwitch", "switch", "all"),
    Domain("HSmooth", "smooth", "all"),
    Domain("HNIPS", "deepz", "all"),
    Domain("ZBox", "boxy", "all", pure=True),
    Domain("ZSwitch", "switch", "all", pure=True),
    Domain("ZSmooth", "smooth", "all", pure=True),
    Domain("ZNIPS", "deepz", "all", pure=True),
    Domain("HRand", "switch", None, random_rows=True),
)}

DIFFAI_NAMES = tuple(d.name for d in DOMAINS.values() if d.name != "hzono")


def random_count(rows) -> Optional[int]:
    """k of ``"random:k"`` (k >= 0), else None."""
    if isinstance(rows, str) and rows.startswith("random:") and rows[len("random:"):].isdigit():
        return int(rows[len("random:"):])
    return None


def valid_rows(rows) -> bool:
    """``correlate_input``: a non-negative int, ``"all"`` or ``"random:k"``."""
    return rows == "all" or random_count(rows) is not None or \
        (isinstance(rows, int) and not isinstance(rows, bool) and rows >= 0)
