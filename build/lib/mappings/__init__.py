"""Mappings: declarative YAML compiled into petl pipelines that build the target's rows.

Arrives with the migration-waves issue. ``reconcile`` never imports this package.
"""
