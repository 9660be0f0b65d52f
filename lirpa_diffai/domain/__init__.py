"""The abstract domain's value types besides HybridZonotope."""
