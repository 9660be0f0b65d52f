"""Tests of lirpa_diffai.evaluation."""
