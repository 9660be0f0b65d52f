"""The soundness fuzzer: every operator auto_LiRPA traces, every method ``lirpa_diffai.BoundedModule``
exposes, in eval and training mode. Each result must be a refusal that names the graph node and
its operator, or bounds that contain every point an input sampler and PGD can reach.

``catalogue``: the operators and a torch snippet per Bound class; ``graphs``: random graphs of
those snippets; ``methods``: the bound methods; ``witness``: points of the input set and the
function's values on them; ``check``: one (graph, method, mode) case; ``known``: the cases that
are known to fail, each with its finding.
"""
