"""Extractors: pluggable readers that stream row batches out of legacy and PoliceWorks sources.

Built-ins (``sql``, ``csv``) and the entry-point group ``continuity.extractors`` arrive with the
migration-waves issue; stages import only :mod:`continuity.domain` from the core package.
"""
