"""Stand-in for ``shared.plugins.inference``."""
