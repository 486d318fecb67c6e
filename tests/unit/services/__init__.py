"""Unit tests of the services (a package: test_observe.py is also a name in tests/e2e)."""
