"""Validators: great-expectations suites on both sides of every wave (one module owns GX).

Arrives with the validators issue.
"""
