"""The vocabulary every stage shares: filing stages, routes, PLACI outcomes and their severity.

Imports nothing of greenlane's own, so stages, the core and the runtime can all depend on it.
"""
