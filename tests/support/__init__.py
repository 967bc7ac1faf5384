"""Helpers the tests share (no fixtures here: those are in conftest.py)."""
