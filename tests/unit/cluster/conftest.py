"""The controller harness (tests/unit/control) is shared with the membership tests."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "control"))

from test_controller import harness, template  # noqa: F401 - fixtures
