"""ServiceInvoker scheduling and the shim's BaseInferenceService."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from plughost.replica.invoke import QUICK_STREAK, ServiceInvoker
from plughost.runtime_api.shared.plugins.inference.serve import BaseInferenceService


def test_plain_handler_runs_off_the_event_loop_thread() -> None:
    def handler(inputs: dict[str, Any], parameters: dict[str, Any]) -> str:
        return threading.current_thread().name

    async def go() -> tuple[str, str]:
        invoker = ServiceInvoker(handler)
        try:
            return await invoker.call({}, {}), threading.current_thread().name
        finally:
            invoker.shutdown()

    worker_thread, loop_thread = asyncio.run(go())
    assert worker_thread.startswith("plugin-call")
    assert worker_thread != loop_thread


def test_health_answers_while_a_plain_call_blocks() -> None:
    entered, release = threading.Event(), threading.Event()

    def blocked(inputs: dict[str, Any], parameters: dict[str, Any]) -> str:
        entered.set()
        release.wait(30)
        return "done"

    async def go() -> tuple[bool, bool, bool, str]:
        invoker = ServiceInvoker(blocked)
        call = asyncio.create_task(invoker.call({}, {}))
        try:
            assert await asyncio.to_thread(entered.wait, 30)
            # the call cannot end before `release`: a health check that waited for the
            # plugin thread would run into this bound instead of answering
            healthy = await asyncio.wait_for(invoker.health(), 10)
            busy, finished = invoker.thread_busy, call.done()
        finally:
            release.set()
        result = await call
        invoker.shutdown()
        return healthy, busy, finished, result

    healthy, busy, finished, result = asyncio.run(go())
    assert healthy and busy and not finished and result == "done"


def test_async_handler_runs_on_the_loop() -> None:
    async def handler(inputs: dict[str, Any], parameters: dict[str, Any]) -> str:
        return threading.current_thread().name

    async def go() -> tuple[str, str]:
        return await ServiceInvoker(handler).call({}, {}), threading.current_thread().name

    on_handler, on_loop = asyncio.run(go())
    assert on_handler == on_loop


def test_awaitable_returned_by_a_plain_handler_is_awaited() -> None:
    async def later() -> int:
        return 5

    def handler(inputs: dict[str, Any], parameters: dict[str, Any]) -> Any:
        return later()

    assert asyncio.run(ServiceInvoker(handler).call({}, {})) == 5


def test_plain_calls_run_one_at_a_time() -> None:
    active = 0
    peak = 0
    lock = threading.Lock()

    def handler(inputs: dict[str, Any], parameters: dict[str, Any]) -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.01)
        with lock:
            active -= 1

    async def go() -> None:
        invoker = ServiceInvoker(handler)
        await asyncio.gather(*(invoker.call({}, {}) for _ in range(10)))

    asyncio.run(go())
    assert peak == 1


def test_plugin_exceptions_propagate_to_the_caller() -> None:
    def handler(inputs: dict[str, Any], parameters: dict[str, Any]) -> None:
        raise KeyError("text")

    with pytest.raises(KeyError, match="text"):
        asyncio.run(ServiceInvoker(handler).call({}, {}))


def test_health_defaults_to_true_and_uses_sync_or_async_checks() -> None:
    async def async_check() -> int:
        return 0

    async def go() -> list[bool]:
        def noop(inputs: dict[str, Any], parameters: dict[str, Any]) -> None:
            return None

        return [
            await ServiceInvoker(noop).health(),
            await ServiceInvoker(noop, lambda: "yes").health(),
            await ServiceInvoker(noop, async_check).health(),
        ]

    assert asyncio.run(go()) == [True, True, False]


class Echo(BaseInferenceService):
    def run_inference(self, inputs: dict[str, Any], parameters: dict[str, Any]) -> Any:
        return {"inputs": inputs, "parameters": parameters, "config": self.config}


def test_shim_base_stores_kwargs_and_call_delegates_to_run_inference() -> None:
    service = Echo(model="m", size=3)
    assert service({"a": 1}) == {"inputs": {"a": 1}, "parameters": {}, "config": service.config}
    assert service.config == {"model": "m", "size": 3}
    assert service.health() is True


def test_shim_base_run_inference_must_be_overridden() -> None:
    with pytest.raises(NotImplementedError, match="BaseInferenceService must implement"):
        BaseInferenceService().run_inference({}, {})


class _Clock:
    """A clock that moves only when told to (the handler "takes" time by advancing it)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_quick_plain_calls_move_onto_the_loop_and_a_slow_one_sends_them_back() -> None:
    delay = {"s": 0.0}
    clock = _Clock()

    def handler(inputs: dict[str, Any], parameters: dict[str, Any]) -> str:
        clock.advance(delay["s"])  # wall and CPU time alike, read by the invoker's clocks
        return threading.current_thread().name

    async def go() -> tuple[list[str], str, str, str, str]:
        invoker = ServiceInvoker(handler, clock=clock, cpu_clock=clock)
        loop_thread = threading.current_thread().name
        try:
            names = [await invoker.call({}, {}) for _ in range(QUICK_STREAK + 2)]
            delay["s"] = 0.005  # slower than a quick call: the next calls go back to the thread
            slow = await invoker.call({}, {})
            delay["s"] = 0.0
            after = await invoker.call({}, {})
            return names, loop_thread, slow, after, str(invoker.inline_ready)
        finally:
            invoker.shutdown()

    names, loop_thread, slow, after, ready = asyncio.run(go())
    assert all(n.startswith("plugin-call") for n in names[:QUICK_STREAK])
    assert names[QUICK_STREAK:] == [loop_thread, loop_thread]
    assert slow == loop_thread  # that one ran inline, and was timed there
    assert after.startswith("plugin-call") and ready == "False"


def test_no_inline_call_while_the_thread_is_busy() -> None:
    gate = threading.Event()

    def handler(inputs: dict[str, Any], parameters: dict[str, Any]) -> str:
        if inputs.get("block"):
            gate.wait(5)
        return threading.current_thread().name

    async def go() -> tuple[bool, bool, str]:
        still = _Clock()  # every call takes no time: quick however loaded the machine is
        invoker = ServiceInvoker(handler, clock=still, cpu_clock=still)
        try:
            for _ in range(QUICK_STREAK):
                await invoker.call({}, {})
            ready_idle = invoker.inline_ready
            invoker._quick_streak = QUICK_STREAK  # as if the blocked call had not reset it
            blocked = asyncio.ensure_future(invoker.in_thread(handler, {"block": True}, {}))
            await asyncio.sleep(0.05)
            ready_busy = invoker.inline_ready
            gate.set()
            return ready_idle, ready_busy, await blocked
        finally:
            invoker.shutdown()

    ready_idle, ready_busy, _ = asyncio.run(go())
    assert ready_idle is True
    assert ready_busy is False
