"""Tests of lirpa_diffai.lirpa03."""
