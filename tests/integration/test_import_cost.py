"""A server that runs no batch job and builds no plugin environment never loads the data
libraries (pandas, pyarrow, numpy) nor ``packaging``: they cost every start a quarter of a
second and an idle server's memory, and load on the first job or requirement parsing.

Each check runs in a fresh interpreter, since this one may have imported them already."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
HEAVY = ("pandas", "pyarrow", "numpy", "packaging")

# prints the heavy modules loaded after the snippet ran, as JSON
REPORT = f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"


def _loaded_after(snippet: str, tmp_path: Path) -> list[str]:
    code = f"import json, sys\n{snippet}\n{REPORT}\n"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_importing_the_app_loads_no_data_library_nor_packaging(tmp_path: Path) -> None:
    assert _loaded_after("import plughost.api.app", tmp_path) == []


def test_a_started_idle_app_loads_no_data_library_nor_packaging(tmp_path: Path) -> None:
    snippet = (
        f"sys.path.insert(0, {str(TESTS)!r})\n"
        "from pathlib import Path\n"
        "from inproc import InProcessServer\n"
        f"server = InProcessServer(home=Path({str(tmp_path / 'home')!r})).start()\n"
        "try:\n"
        "    with server.client() as c:\n"
        "        assert c.get('/healthz').status_code == 200\n"
        "        assert c.get('/v1/namespaces/default/batches').status_code < 500\n"
        "finally:\n"
        "    server.stop()\n"
    )
    assert _loaded_after(snippet, tmp_path) == []
