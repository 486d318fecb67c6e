"""Mixpeek's ``shared`` package as plughost provides it to plugins (docs/plugin-runtime.md)."""
