"""The web interfaces: one app factory per interface, both built on ``app_factory``."""
