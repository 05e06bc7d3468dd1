"""Reconciliation: a disposition for every source record, proven from the databases.

Independent of ``mappings``, the loaders and the bundled target schema (import-linter enforces
it), so that it can prove a load someone else performed.
"""
