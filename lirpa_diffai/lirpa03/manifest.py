"""The one manifest of every change lirpa_diffai makes to auto_LiRPA 0.3 and to the torch /
NumPy it runs on, applied here, in this order, behind one version gate.

Each entry is a :class:`~.fix.Fix`: the attributes it replaces, the replacement, why (its
docstring) and the test that fails without it. An attribute is replaced by one fix, unless a
later fix declares that it wraps the earlier one (``after``). Porting to another auto_LiRPA is
a walk down :data:`FIXES`: each entry's test tells whether the new version still needs it.

``python -m lirpa_diffai.lirpa03 --markdown`` prints the table of ``docs/auto-lirpa-fixes.md``.
"""
from __future__ import annotations

import importlib
import sys
import types
import warnings
from importlib import metadata

from .fix import Fix

# not ``from . import compat, ...``: with only this package loaded (the start-up hook), that
# statement imports ``lirpa_diffai`` as well, whose ``__init__`` imports auto_LiRPA
(compat, fixes_activations, fixes_alpha, fixes_attention, fixes_convolution, fixes_division, fixes_forward,
 fixes_indexing, fixes_linear, fixes_nonlinear, fixes_pooling) = (
    importlib.import_module(f"{__package__}.{name}")
    for name in ("compat", "fixes_activations", "fixes_alpha", "fixes_attention", "fixes_convolution",
                 "fixes_division", "fixes_forward", "fixes_indexing", "fixes_linear", "fixes_nonlinear",
                 "fixes_pooling"))

AUTO_LIRPA_VERSION = "0.3"    # the version every fix was written for
MIN_TORCH = (2, 0)

FIXES: tuple[Fix, ...] = (
    # before auto_LiRPA's module body runs
    compat.numpy_arraysetops, compat.onnx_set_opset_version, compat.onnx_symbolic_opsets,
    compat.jit_node_getitem,
    # torch 2 / NumPy 2 compatibility
    compat.bounded_module_named_members, compat.bound_pad_tensor_value, compat.prim_constant_interval,
    compat.contiguous_backward_coefficients, compat.prints_to_debug_log,
    compat.internal_warnings_to_debug_log,
    # soundness: linear operators
    fixes_linear.patches_broadcast_constant, fixes_linear.average_pool_settings,
    fixes_linear.pad_constant_backward, fixes_linear.conv_dilation_groups_backward,
    fixes_linear.patches_to_matrix_rectangular, fixes_linear.concat_backward_any_axis,
    fixes_linear.reduction_over_a_batch_of_one, fixes_linear.transpose_and_matmul_take_patches,
    fixes_linear.gather_elements_repeated_indices, fixes_linear.batched_constant_contribution,
    fixes_linear.constant_operand_coefficients, fixes_linear.buffers_without_batch_axis,
    fixes_linear.constant_root_contribution, fixes_linear.layer_settings_refused,
    fixes_convolution.one_dimensional_convolution, fixes_convolution.transposed_convolution_settings,
    fixes_pooling.max_pool_any_window,
    # soundness: forward modes
    fixes_forward.add_sub_forward, fixes_forward.multiply_constant_forward,
    fixes_forward.dense_forward_input, fixes_forward.forward_mode_refusals,
    # soundness: nonlinear operators and BoundedModule
    fixes_nonlinear.relu_full_alpha_indices, fixes_nonlinear.leaky_relu_bounds,
    fixes_division.layer_norm_division_as_traced, fixes_division.division_interval,
    fixes_division.reciprocal_of_either_sign,
    fixes_division.division_denominator_checked, fixes_nonlinear.sqrt_upper_tangent,
    fixes_nonlinear.log_without_clamp,
    fixes_nonlinear.pow_exponent_of_a_constant,
    fixes_nonlinear.nested_load_state_dict, fixes_nonlinear.construction_keeps_tensor_versions,
    fixes_nonlinear.start_coefficients_without_patches, fixes_nonlinear.unstable_locations_of_permuted_bounds,
    fixes_nonlinear.alpha_crown_output_shape, fixes_nonlinear.full_alpha_of_any_rank,
    fixes_nonlinear.relu_not_reached_by_crown,
    fixes_nonlinear.unsound_relaxations_refused,
    # soundness: selecting and copying elements (chunk, split, index_select, expand)
    fixes_indexing.gather_any_indices, fixes_indexing.integer_division_forward,
    fixes_indexing.product_of_two_constants_interval, fixes_indexing.expand_bounds,
    fixes_indexing.split_backward_patches,
    # today's activations as one node each; auto_LiRPA's misleading prints and bare errors
    fixes_activations.activations_traced_whole, fixes_convolution.adaptive_average_pool_traced,
    fixes_convolution.average_pool_forward_mode,
    fixes_activations.dropout_message_silenced, fixes_activations.dropout_alone_traced_in_training_mode,
    fixes_alpha.alpha_of_activations_shared_over_convolutions,
    fixes_alpha.relu_sparse_alphas_on_a_dense_spec,
    fixes_activations.overflow_never_nan, fixes_activations.global_average_pool_patches,
    fixes_activations.broadcast_product_patches,
    fixes_activations.slice_any_step, fixes_indexing.slice_computed_endpoints,
    fixes_indexing.unperturbed_nodes_by_value, fixes_activations.pad_any_axis,
    fixes_activations.patches_of_scalars_and_pools, fixes_activations.backward_failures_named,
    # attention: softmax as one node, ReduceMax in the CROWN family
    fixes_attention.softmax_traced_whole, fixes_attention.reduce_max_backward,
    # last: it wraps the node methods that the fixes above replaced
    fixes_nonlinear.failing_nodes_named,
)

APPLIED: list[str] = []           # fixes applied in this process, in order
PATCHED: dict[str, str] = {}      # "module.Class.attribute" -> the fix that replaced it last
REPLACED: dict[str, list[str]] = {}   # fix -> the attributes it replaced


class ManifestError(RuntimeError):
    """The manifest itself is wrong: two fixes replace one attribute without declaring it."""


def version_tuple(text: str) -> tuple[int, ...]:
    """``"2.13.0+cpu"`` -> ``(2, 13, 0)``."""
    return tuple(int(part) for part in text.split("+")[0].split(".")[:3] if part.isdigit())


def installed(distribution: str) -> str | None:
    """The installed version of ``distribution``, read without importing it."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def supported() -> bool:
    """The version gate: auto_LiRPA is the version the fixes were written for, on torch 2."""
    torch = installed("torch")
    return installed("auto_LiRPA") == AUTO_LIRPA_VERSION and torch is not None \
        and version_tuple(torch) >= MIN_TORCH


def target_name(owner, attribute: str) -> str:
    """``module.Class.attribute`` (or ``module.attribute``) of a replaced attribute."""
    if isinstance(owner, types.ModuleType):
        return f"{owner.__name__}.{attribute}"
    return f"{owner.__module__}.{owner.__qualname__}.{attribute}"


def replace(owner, attribute: str, value) -> None:
    """Set the attribute; a module set on a package is also importable by its name."""
    setattr(owner, attribute, value)
    if isinstance(owner, types.ModuleType) and isinstance(value, types.ModuleType):
        sys.modules.setdefault(f"{owner.__name__}.{attribute}", value)


def check_chain(fix: Fix, name: str) -> None:
    earlier = PATCHED.get(name)
    if earlier is not None and earlier not in fix.after and "*" not in fix.after:
        raise ManifestError(f"{fix.name} replaces {name}, which {earlier} already replaced; "
                            f"declare after=({earlier!r},) if it wraps it")


def applies(fix: Fix, stage: str) -> bool:
    if fix.stage != stage or fix.name in APPLIED:
        return False
    return fix.since_torch is None or version_tuple(installed("torch") or "0") >= version_tuple(fix.since_torch)


def apply(stage: str, fixes: tuple[Fix, ...] = FIXES) -> None:
    """Apply the fixes of ``stage`` (``"pre-import"`` or ``"post-import"``) not applied yet, in
    manifest order; on an unsupported auto_LiRPA, warn and apply none."""
    if not supported():
        warnings.warn(f"lirpa_diffai's fixes are written for auto_LiRPA {AUTO_LIRPA_VERSION} on torch >= 2; "
                      f"found auto_LiRPA {installed('auto_LiRPA')} and torch {installed('torch')}: none is "
                      "applied, and bounds are not known to be sound (see lirpa_diffai/lirpa03/manifest.py)",
                      RuntimeWarning, stacklevel=2)
        return
    for fix in fixes:
        if not applies(fix, stage):
            continue
        replacements = fix.build()
        for (owner, attribute), value in replacements.items():
            name = target_name(owner, attribute)
            check_chain(fix, name)
            replace(owner, attribute, value)
            PATCHED[name] = fix.name
            REPLACED.setdefault(fix.name, []).append(name)
        APPLIED.append(fix.name)


def describe_targets(targets: list[str]) -> str:
    """A few targets as they are; many as the attributes replaced with their number of owners."""
    if len(targets) <= 3:
        return ", ".join(f"`{t}`" for t in sorted(targets))
    owners: dict[str, set[str]] = {}
    for target in targets:
        owner, attribute = target.rsplit(".", 1)
        owners.setdefault(attribute, set()).add(owner)
    if all(len(o) == 1 for o in owners.values()) and len({next(iter(o)) for o in owners.values()}) == 1:
        owner = next(iter(next(iter(owners.values()))))
        return f"`{owner}`: " + ", ".join(f"`{a}`" for a in sorted(owners))
    return ", ".join(f"`{attribute}` of {len(o)} owners" for attribute, o in sorted(owners.items()))


def fixes_markdown() -> str:
    """The manifest as a markdown table (fix, what it replaces, why, its test), for the docs."""
    import auto_LiRPA  # noqa: F401  (applies the fixes through the import hook)
    lines = [f"Every change lirpa_diffai makes to auto_LiRPA {AUTO_LIRPA_VERSION}, torch and NumPy, in the "
             "order applied (`lirpa_diffai/lirpa03/manifest.py`). Generated by "
             "`python -m lirpa_diffai.lirpa03 --markdown`; a test keeps it current.", "",
             "| fix | replaces | why | test |", "|---|---|---|---|"]
    for fix in FIXES:
        when = f" (torch >= {fix.since_torch})" if fix.since_torch else ""
        wraps = f" Wraps {', '.join(fix.after)}." if fix.after and fix.after != ("*",) else ""
        targets = REPLACED.get(fix.name)
        replaced = describe_targets(targets) if targets else "nothing (not needed here)"
        lines.append(f"| `{fix.name}`{when} | {replaced} | {fix.reason}{wraps} | `{fix.test}` |")
    return "\n".join(lines) + "\n"

