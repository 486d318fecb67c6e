"""Unit tests of the plugin runtime API (a package, so its conftest does not shadow the others)."""
