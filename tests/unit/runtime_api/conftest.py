"""The runtime API tests import ``shared`` and ``engine`` the way plugins do: by top-level
name, from the runtime API folder put on ``sys.path``."""

from __future__ import annotations

import sys

from plughost.runtime_api import RUNTIME_API_DIR

if str(RUNTIME_API_DIR) not in sys.path:
    sys.path.append(str(RUNTIME_API_DIR))
