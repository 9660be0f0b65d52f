"""Tests of lirpa_diffai.pipeline."""
