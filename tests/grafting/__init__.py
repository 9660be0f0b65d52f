"""Tests of lirpa_diffai.grafting."""
