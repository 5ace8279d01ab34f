"""Counterfeit product detection against brand reference galleries."""

__version__ = "0.1.0"
