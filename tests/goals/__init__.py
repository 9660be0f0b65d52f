"""Tests of lirpa_diffai.goals."""
