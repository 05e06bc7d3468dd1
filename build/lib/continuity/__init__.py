"""Continuity: move a police force's records to a new product and prove nothing was lost."""

__version__ = "0.1.0"
