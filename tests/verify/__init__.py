"""Tests of lirpa_diffai.verify."""
