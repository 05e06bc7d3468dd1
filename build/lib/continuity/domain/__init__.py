"""Pure helpers every stage may share: errors, keys, digests, names, dates.

Nothing in this package imports a stage or the rest of :mod:`continuity`.
"""
