"""Tests of lirpa_diffai.bound_ops."""
