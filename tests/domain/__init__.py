"""Tests of lirpa_diffai.domain."""
