"""Evaluating a network over a BoundedModule: margins, attacks, layer widths."""
