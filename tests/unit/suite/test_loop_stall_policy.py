"""Which loop-stall lines of a server log fail a test (tests/support.py)."""

from __future__ import annotations

from support import loop_stalls

LOG = """\
INFO started
WARNING loop stall: 4653 ms in plughost/archive/_child.py:117 _collect; stack: ...
WARNING loop stall: 230 ms in plughost/backends/local/registry.py:109 process_start_time
WARNING loop stall: 1885 ms in the loop runner (GIL wait); busy: intake
WARNING loop stall: 1521 ms in an unseen place (no thread could look: the GIL was held)
WARNING loop stall: 1000 ms in plughost/control/store.py:69 aliases
"""


def test_long_stalls_in_our_code_fail_and_short_or_unattributed_ones_do_not() -> None:
    assert loop_stalls(LOG, fail_ms=1000) == [
        "loop stall: 4653 ms in plughost/archive/_child.py:117 _collect; stack: ...",
        "loop stall: 1000 ms in plughost/control/store.py:69 aliases",
    ]


def test_the_bound_is_a_parameter() -> None:
    assert len(loop_stalls(LOG, fail_ms=100)) == 3
    assert loop_stalls(LOG, fail_ms=5000) == []
    assert loop_stalls("INFO nothing to see\n", fail_ms=1) == []
