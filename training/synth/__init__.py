"""Deterministic synthetic product-photo benchmark in the evaluation layout."""
