"""Tests of lirpa_diffai.training."""
