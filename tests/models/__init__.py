"""Tests of lirpa_diffai.models."""
