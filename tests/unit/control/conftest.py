"""The controller harness's fixtures, shared with the rollout-guard tests."""

from test_controller import harness, template  # noqa: F401 - fixtures
