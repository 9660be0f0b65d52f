"""Tests of lirpa_diffai.cli."""
