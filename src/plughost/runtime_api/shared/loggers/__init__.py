"""``shared.loggers``: loggers for plugin code."""
