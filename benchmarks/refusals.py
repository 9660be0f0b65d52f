"""The refusals that remain anywhere in the project, each with its reason (issue 20: "a refusal
is acceptable only where no sound bound exists; say which those are, and why"). Fixed text:
``benchmarks/architecture_table.py`` writes it after the architecture table
(``docs/architectures.md``).

Three kinds: no sound bound exists; auto_LiRPA 0.3's own bound is unsound and is refused; not
implemented yet (with what bounds it instead). A row: (operator or setting, the methods that
refuse it, why, what to use instead).
"""
from __future__ import annotations

CROWN_LIKE = "CROWN, CROWN-IBP, alpha-CROWN, CROWN-hzono, forward modes"
ZONOTOPES = "hzono (every variant), pure zonotope (ZBox ...), CROWN-hzono"

NO_SOUND_BOUND = (
    ("`1 / y`, `x / y`, `torch.reciprocal(y)` with a denominator interval containing 0",
     "every method", "`1 / y` is unbounded on such an interval",
     "a smaller input set, or a denominator kept off 0 (`y.abs() + c`)"),
    ("`torch.log`, `torch.sqrt` of a range reaching below 0", ZONOTOPES,
     "the function (and the model's output) is NaN there; IBP (both) and CROWN (`sqrt`) bound it "
     "where it is defined, `x >= 0`", "keep the argument >= 0 (`var + eps`, `x.clamp(min=c)`)"),
    ("`torch.log` of a range reaching 0 or below", "CROWN, CROWN-IBP, alpha-CROWN, forward modes",
     "`log 0 = -inf`: no finite linear lower bound exists", "IBP, hzono (`-inf` below at 0)"),
    ("NaN or infinite input values, `eps`, `x_L` / `x_U`; a negative `eps`; `x_L > x_U`",
     "every method (`ValueError` naming the input)", "not a non-empty set of real numbers",
     "finite inputs and a non-empty box"),
    ("`nn.Dropout` in training mode before a forward pass drew its mask for this batch",
     "hzono, pure zonotope",
     "a random function: what is bounded is the network with the mask the last pass drew "
     "(as auto_LiRPA's IBP and CROWN do), and there is none yet",
     "call the BoundedModule on the batch first, or eval mode"),
    ("`nn.MultiheadAttention` dropout on the attention weights in training mode",
     "every method (by module name)", "a random function; the written-out attention keeps no drawn mask",
     "eval mode, or `dropout=0`"),
    ("MMR on a network that is not piecewise linear (sigmoid, tanh, softmax, a product of two "
     "input-dependent values)", "MMR (`RegionError` naming the node)",
     "such a network has no linear regions, so their distances do not exist", "a ReLU network"),
)

UNSOUND_IN_AUTO_LIRPA = (
    ("`torch.heaviside`", "CROWN, alpha-CROWN, forward modes",
     "auto_LiRPA 0.3's lower line lies above its upper line",
     "none yet: IBP fails in auto_LiRPA 0.3's forward pass of it, hzono has no transformer"),
    ("`sin`, `cos`", "CROWN, CROWN-IBP, alpha-CROWN, forward modes",
     "NaN coefficients on an interval of zero width (eps = 0)", "IBP"),
    ("`tan`", "alpha-CROWN", "its optimized relaxation (atan's tangent lines, inverted) misses "
     "`tan(x)` even at eps = 0", "CROWN, IBP"),
    ("max pooling", "forward modes", "the bounds cross (lower above upper on `max_pool2d(x, 3, 2, 1)`)",
     "IBP, CROWN, alpha-CROWN, hzono"),
    ("`c / y`, a constant over a perturbed value", "forward modes",
     "auto_LiRPA 0.3 bounds it as `y / c`", "CROWN, IBP, or write `torch.reciprocal(y) * c`"),
    ("`F.pad(mode='reflect' / 'replicate')`, `Conv2d(padding_mode='reflect' / 'replicate')`",
     "every method (when wrapped)", "auto_LiRPA 0.3 computes and bounds it as zero padding",
     "constant or circular padding"),
    ("a traced graph that computes another function than the model (checked when wrapped, on two inputs)",
     "every method (`GraphMismatchError` naming the first differing node)",
     "every bound would be one of another function", "none: a tracing bug to report"),
)

NOT_IMPLEMENTED = (
    ("`sin`, `cos`, `tan`, Heaviside, `cumsum`, `where`, `==`, `~`, `torch.gather` "
     "(GatherElements), `.double()` (Cast), `diag`, `diagonal`, RNN", ZONOTOPES,
     "no transformer written (the registry matches exact Bound classes)",
     "IBP (all but Heaviside, `cumsum`, `==`, `~`, RNN); CROWN for `tan`, GatherElements, Cast"),
    ("operations that move values across the batch axis (`x.transpose(0, 1)`, `x - x.mean(0)`, "
     "`torch.cumsum(x, 0)`, `softmax(x, 0)`, `diag`, a reshape merging samples, `expand` from a "
     "lower rank)", CROWN_LIKE, "linear bounds keep one block of coefficients per sample", "IBP, hzono"),
    ("`cumsum`; comparisons and masks (`==`, `~`)", "IBP, CROWN, alpha-CROWN, forward modes",
     "auto_LiRPA 0.3 has no bound of them (its failure names the node)",
     "a cumulative sum along a feature axis as a product by a triangular constant matrix"),
    ("`nn.LSTM`, `nn.GRU`, `nn.RNN`, a custom `autograd.Function`, a fused `aten::ATen` kernel",
     "every method (when wrapped, naming the operator and its module)",
     "auto_LiRPA 0.3 has no Bound class that runs (`BoundRNN` fails)",
     "the recurrence written out with `nn.Linear` and activations, or a registered Bound class"),
    ("`x ** n` with `n` other than 2", CROWN_LIKE, "auto_LiRPA 0.3 relaxes `x ** 2` only",
     "IBP, hzono (integer `n >= 0`)"),
    ("`x ** p` with `p` fractional, negative, per-element or perturbed", ZONOTOPES,
     "only integer exponents >= 0", "`torch.sqrt`, `torch.reciprocal`"),
    ("`Conv3d`, `ConvTranspose1d` / `ConvTranspose3d`, max pooling other than 2-D, asymmetric "
     "convolution padding", "every method (when the node is built)",
     "auto_LiRPA 0.3 has 1-D / 2-D convolutions, 2-D transposed convolutions and 2-D pooling",
     "asymmetric padding: `F.pad`, then a convolution without padding; 3-D: none yet"),
    ("a perturbed weight of a convolution (of `nn.Linear` too, in hzono)",
     "IBP, CROWN, alpha-CROWN, forward modes; hzono",
     "only constant weights", "none yet"),
    ("a layout that contracts or moves the batch axis in hzono (`Gemm` with transA = 1, a `MatMul` "
     "contracting it, a constant whose broadcast adds leading axes, a product of two perturbed "
     "operands that are not batches of matrices of one rank)", ZONOTOPES, "it would mix samples",
     "IBP"),
    ("padding the batch axis (`F.pad` adding samples)", "every method (when wrapped)", "not implemented",
     "none"),
    ("`nn.Softplus(beta)` with `beta <= 0`", "every method (when the node is built)",
     "`beta = 0` is undefined; `beta < 0` makes it concave, not implemented", "`beta > 0`"),
    ("`torch.where`; Cast (alpha-CROWN); `(x @ W1) @ W2`, two products by constant matrices in a row "
     "on a value of three or more axes",
     "CROWN, alpha-CROWN", "auto_LiRPA 0.3's backward pass fails there (its failure names the node)",
     "CROWN-IBP, IBP, hzono"),
    ("`abs`, `sqrt`, `x ** n`, reduce-max, softmax, `where`, GatherElements, `Clip`, grafted ReLU",
     "forward modes", "auto_LiRPA 0.3 has no forward-mode bound of them", "CROWN, IBP"),
    ("a final node of more than (batch, n) axes without a specification `C`",
     "alpha-CROWN, alpha-CROWN-hzono", "its best bounds are kept per (batch, output) row",
     "flatten the output, or pass `C`"),
    ("an activation whose alphas auto_LiRPA 0.3 cannot create (an internal check fails)",
     "alpha-CROWN", "not implemented", "CROWN"),
    ("input sets other than L-inf balls, boxes and zonotopes (L1, L2 balls)", ZONOTOPES,
     "not implemented", "IBP, CROWN, alpha-CROWN"),
    ("a zonotope input set (`PerturbationHybridZonotope`) in the forward modes or with beta-CROWN "
     "constraints", "forward modes, beta-CROWN", "not implemented", "CROWN, alpha-CROWN, hzono"),
    ("grafted ReLU with a perturbed slope, intercept or mask; grafted ReLU in the MIP / LP encoding",
     "every method; the MIP / LP encoding", "only the activation input may be perturbed; no encoding written",
     "constant slope, intercept and mask; IBP, CROWN, alpha-CROWN, hzono instead of MIP / LP"),
    ("`nn.MultiheadAttention` with `attn_mask`, `is_causal`, `key_padding_mask`, `add_bias_kv`, "
     "`add_zero_attn`", "every method (by module name)",
     "the written-out attention does not express them", "none yet"),
    ("bounds that come out NaN (overflow in float, `inf - inf`)", "every method (naming the first "
     "node whose bounds overflow)", "a NaN bound bounds nothing", "a smaller input set, or float64"),
    ("`verify` on a graph with an operator outside `verify.trust.TRUSTED` (sigmoid, tanh, softmax, "
     "`exp` ...)", "verify (branch and bound)",
     "the fuzzer has not admitted its linear bounds for a \"verified\" answer",
     "`compute_bounds` (incomplete) with any method"),
    ("MMR on piecewise-linear operators other than ReLU (max pooling, LeakyReLU, `Clip`, `abs`)",
     "MMR (`RegionError` naming the node)", "not implemented", "ReLU"),
    ("a model whose parameter or buffer changed dtype, device or shape after it was wrapped",
     "every method (naming the tensor)", "the traced graph fixed them", "wrap the model again"),
)

KINDS = (
    ("No sound bound exists", NO_SOUND_BOUND),
    ("auto_LiRPA 0.3's own bound is unsound, and is refused", UNSOUND_IN_AUTO_LIRPA),
    ("Not implemented yet", NOT_IMPLEMENTED),
)


def markdown() -> str:
    """The section: one table per kind, one row per refusal."""
    lines = ["## Refusals that remain", "",
             "Every refusal in the project, by kind. Each names the graph node and its operator "
             "(or the module, input or tensor), and why. Written by `benchmarks/refusals.py`."]
    for title, rows in KINDS:
        lines += ["", f"### {title}", "", "| operator or setting | refused by | why | instead |",
                  "|---|---|---|---|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
