"""The web interfaces: one app factory per interface, sharing the plumbing in ``common``."""
