"""Complete verification: a verified / falsified / timeout answer per sample, by attack,
incomplete bounds and branch and bound on auto_LiRPA (:func:`verify`); an exact MIP oracle for
small feed-forward networks (:func:`mip_minimum`)."""
from .api import bounded_for_verify, verify
from .bab import BaBOptions
from .mip import MIPResult, mip_minimum
from .spec import SampleResult, Spec, Status, VerificationError, robustness_spec

__all__ = ["verify", "bounded_for_verify", "BaBOptions", "MIPResult", "mip_minimum", "SampleResult", "Spec", "Status",
           "VerificationError", "robustness_spec"]
