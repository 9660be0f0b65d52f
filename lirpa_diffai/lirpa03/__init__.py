"""Everything that patches or guards auto_LiRPA 0.3, the one place to revisit on an upgrade.

- :mod:`.manifest`: every change to auto_LiRPA, torch and NumPy, applied in one place behind one
  version gate; :mod:`.fix` (an entry), :mod:`.compat` (torch 2 / NumPy 2),
  :mod:`.fixes_linear`, :mod:`.fixes_nonlinear`, :mod:`.fixes_division` and :mod:`.fixes_forward`
  (soundness), :mod:`.hook` (start-up hook).
- guards around auto_LiRPA's own code: :mod:`.graph_check` (the traced graph computes the
  model), :mod:`.batch_axis` (nodes that mix samples), :mod:`.input_checks` (what
  ``compute_bounds`` is given), :mod:`.state` (what a bound pass must leave as it found),
  :mod:`.clip` (``Clip`` as auto_LiRPA 0.3 lacks it).

The start-up hook loads this package without ``lirpa_diffai``: this file imports nothing.
"""
