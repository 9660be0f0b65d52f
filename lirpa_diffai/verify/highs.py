"""Linear and mixed-integer programs with HiGHS (Huangfu and Hall 2018, "Parallelizing the
dual revised simplex method"; ``highspy``, the optional extra ``complete``):
``min c^T v + c0`` subject to ``v_lo <= v <= v_hi`` and ``r_lo <= A v <= r_hi``, with some
``v`` integral (a MIP) or none (an LP)."""
from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .spec import VerificationError

INF = float("inf")
# HiGHS (1.16) runs these sub-MIPs at the root even at heuristic effort 0: on the MIP of
# ConvSmall CIFAR over a patch they took 12 of 20 s without finding a solution
SUB_MIP_HEURISTICS = ("mip_heuristic_run_rins", "mip_heuristic_run_rens",
                      "mip_heuristic_run_root_reduced_cost",
                      "mip_heuristic_run_feasibility_jump")


def require_highspy():
    """The ``highspy`` module, or a VerificationError saying how to install it."""
    try:
        import highspy
    except ImportError:
        raise VerificationError("exact LP/MIP solving needs HiGHS: pip install "
                                "'lirpa-diffai[complete]' (the highspy package)") from None
    _swallow_banner(highspy)
    return highspy


@functools.cache
def _swallow_banner(highspy) -> None:
    """HiGHS' C++ constructor prints its banner on the process's stdout the first time (no
    option can stop it): build that first instance with file descriptor 1 on /dev/null, so
    that command-line output (the certify table) stays clean."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)


@dataclass
class Program:
    """A program under construction: variables with bounds, rows in coordinate form."""

    v_lo: list = field(default_factory=list)
    v_hi: list = field(default_factory=list)
    integral: list = field(default_factory=list)
    rows: list = field(default_factory=list)     # (cols ndarray, vals ndarray, lo, hi)

    def add_vars(self, lo, hi, integral: bool = False) -> np.ndarray:
        """New variables with bounds ``lo``/``hi`` (arrays); returns their indices."""
        lo, hi = np.asarray(lo, dtype=np.float64).ravel(), np.asarray(hi, dtype=np.float64).ravel()
        start = len(self.v_lo)
        self.v_lo.extend(lo.tolist())
        self.v_hi.extend(hi.tolist())
        self.integral.extend([integral] * len(lo))
        return np.arange(start, start + len(lo))

    def add_row(self, cols, vals, lo: float = -INF, hi: float = INF) -> None:
        """``lo <= sum(vals * v[cols]) <= hi``."""
        cols, vals = np.asarray(cols), np.asarray(vals, dtype=np.float64)
        keep = vals != 0
        self.rows.append((cols[keep], vals[keep], float(lo), float(hi)))

    def add_dense_rows(self, matrix: np.ndarray, cols: np.ndarray, lo, hi) -> None:
        """One row per line of ``matrix`` over the variables ``cols``."""
        lo, hi = np.broadcast_to(lo, matrix.shape[:1]), np.broadcast_to(hi, matrix.shape[:1])
        for line, a, b in zip(matrix, lo, hi):
            self.add_row(cols, line, a, b)


@dataclass
class Solution:
    """``status`` ("optimal", "infeasible", "time limit", other HiGHS status text), the
    objective ``value`` and the variables ``v`` (None unless a solution was found)."""

    status: str
    value: float
    v: Optional[np.ndarray]


def solve(program: Program, cost: dict, offset: float = 0.0, time_limit: float = INF,
          cutoff: Optional[float] = None) -> Solution:
    """Minimise ``sum(cost[i] * v_i) + offset`` over ``program`` with HiGHS. With ``cutoff``
    (MIPs): only decide whether the minimum is below it: the search prunes every node whose
    bound reaches it and stops at the first solution below it; "infeasible" then means the
    minimum is ``>= cutoff``."""
    highspy = require_highspy()
    h = highspy.Highs()
    h.setOptionValue("output_flag", bool(__import__("os").environ.get("HIGHS_LOG")))
    h.setOptionValue("threads", 1)
    if time_limit < INF:
        h.setOptionValue("time_limit", max(float(time_limit), 1e-3))
    lp = highspy.HighsLp()
    n = len(program.v_lo)
    lp.num_col_, lp.num_row_ = n, len(program.rows)
    c = np.zeros(n)
    for i, value in cost.items():
        c[i] += value
    lp.col_cost_ = c
    # with a cutoff the offset stays out of HiGHS, whose objective_bound compares the
    # objective as it solves it
    lp.offset_ = float(offset) if cutoff is None else 0.0
    lp.col_lower_ = np.asarray(program.v_lo)
    lp.col_upper_ = np.asarray(program.v_hi)
    lp.row_lower_ = np.array([r[2] for r in program.rows])
    lp.row_upper_ = np.array([r[3] for r in program.rows])
    lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
    lengths = np.array([len(r[0]) for r in program.rows], dtype=np.int64)
    lp.a_matrix_.start_ = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    lp.a_matrix_.index_ = (np.concatenate([r[0] for r in program.rows]).astype(np.int32)
                           if program.rows else np.zeros(0, np.int32))
    lp.a_matrix_.value_ = (np.concatenate([r[1] for r in program.rows])
                           if program.rows else np.zeros(0))
    if any(program.integral):
        # HiGHS' sub-MIP heuristics cost ~10x the solve on these small MIPs
        h.setOptionValue("mip_heuristic_effort", 0.0)
        for heuristic in SUB_MIP_HEURISTICS:
            h.setOptionValue(heuristic, False)
        if cutoff is not None:
            h.setOptionValue("objective_bound", float(cutoff - offset))
            h.setOptionValue("mip_max_improving_sols", 1)
        lp.integrality_ = [highspy.HighsVarType.kInteger if i else highspy.HighsVarType.kContinuous
                           for i in program.integral]
    h.passModel(lp)
    h.run()
    status = h.getModelStatus()
    text = {highspy.HighsModelStatus.kOptimal: "optimal",
            highspy.HighsModelStatus.kInfeasible: "infeasible",
            highspy.HighsModelStatus.kTimeLimit: "time limit",
            highspy.HighsModelStatus.kSolutionLimit: "solution limit"}.get(status, h.modelStatusToString(status))
    if text == "infeasible":
        return Solution(text, INF, None)
    info = h.getInfo()
    has_solution = text == "optimal" or getattr(info, "primal_solution_status", 0) == 2
    v = np.asarray(h.getSolution().col_value) if has_solution else None
    outside = 0.0 if cutoff is None else offset   # the offset HiGHS did not see
    value = float(info.objective_function_value) + outside if has_solution else -INF
    if text not in ("optimal", "solution limit") and any(program.integral):
        # a MIP stopped early: its dual bound is what is proved
        value = float(getattr(info, "mip_dual_bound", -INF)) + outside
    return Solution(text, value, v)
