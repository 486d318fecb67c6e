"""The close check: a close that fails with EBADF is logged with its stack, a normal one not."""

from __future__ import annotations

import gc
import logging
import os
import socket
from collections.abc import Iterator

import pytest

from plughost.server import fdcheck
from plughost.server.fdcheck import FAILED_CLOSE_PREFIX, GC_CLOSE_PREFIX


@pytest.fixture
def checked(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    installed_here = fdcheck.install()
    caplog.set_level(logging.WARNING, logger="plughost.server.fdcheck")
    try:
        yield caplog
    finally:
        if installed_here:
            fdcheck.uninstall()


def _failed_closes(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if FAILED_CLOSE_PREFIX in r.getMessage()]


def _double_close_of_a_descriptor() -> None:
    read, write = os.pipe()
    os.close(write)
    os.close(read)
    os.close(read)  # the second close of the same number


def test_a_double_close_is_recorded_with_its_stack(checked: pytest.LogCaptureFixture) -> None:
    with pytest.raises(OSError) as err:
        _double_close_of_a_descriptor()
    assert err.value.errno == 9  # raised as it was: the check changes nothing else
    [message] = _failed_closes(checked)
    assert "descriptor" in message and "EBADF" in message
    assert "_double_close_of_a_descriptor" in message  # the stack names the culprit


def test_a_socket_whose_descriptor_was_closed_under_it_is_recorded(
    checked: pytest.LogCaptureFixture,
) -> None:
    ours, theirs = socket.socketpair()
    theirs.close()
    os.close(ours.fileno())  # someone else closed the socket's number
    with pytest.raises(OSError):
        ours.close()
    [message] = _failed_closes(checked)
    assert "socket" in message and "EBADF" in message


def test_normal_closes_are_not_recorded(checked: pytest.LogCaptureFixture) -> None:
    read, write = os.pipe()
    os.close(read)
    os.close(write)
    first, second = socket.socketpair()
    first.close()
    second.close()
    second.close()  # closing a closed socket object is a no-op, not a close(2)
    assert _failed_closes(checked) == []


def test_installing_twice_wraps_once(checked: pytest.LogCaptureFixture) -> None:
    assert fdcheck.installed()
    assert fdcheck.install() is False
    with pytest.raises(OSError):
        _double_close_of_a_descriptor()
    assert len(_failed_closes(checked)) == 1


def test_uninstall_puts_the_original_close_back() -> None:
    original = os.close
    installed_here = fdcheck.install()
    if not installed_here:
        pytest.skip("the check was already on in this process")
    assert os.close is not original
    fdcheck.uninstall()
    assert os.close is original and not fdcheck.installed()


def _drop_an_open_socket() -> int:
    first, second = socket.socketpair()
    first.close()
    fd = second.fileno()
    del second  # never closed: its finalizer closes it
    return fd


def test_a_socket_left_to_the_garbage_collector_is_recorded(
    checked: pytest.LogCaptureFixture,
) -> None:
    gc.collect()  # what earlier tests left behind is not this test's
    checked.clear()
    fd = _drop_an_open_socket()
    gc.collect()
    messages = [r.getMessage() for r in checked.records if GC_CLOSE_PREFIX in r.getMessage()]
    assert len(messages) == 1 and f"unclosed <socket.socket fd={fd}," in messages[0]
    assert _failed_closes(checked) == []
