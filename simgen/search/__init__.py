"""Criticality search over a scenario's parameters (see simgen/search/run.py)."""
