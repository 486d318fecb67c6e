"""Runtime stand-in for the ``shared`` package that plugins import their base class from."""
