"""Stand-in for ``shared.plugins``."""
