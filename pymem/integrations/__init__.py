"""Adapters that let other frameworks use pymem; each needs its own extra."""
