"""Tests of lirpa_diffai.mmr."""
