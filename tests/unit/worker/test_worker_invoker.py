"""ServiceInvoker scheduling and the shim's BaseInferenceService."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from plughost.runtime_api.shared.plugins.inference.serve import BaseInferenceService
from plughost.worker.invoke import QUICK_STREAK, ServiceInvoker


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
    def slow(inputs: dict[str, Any], parameters: dict[str, Any]) -> str:
        time.sleep(0.5)
        return "done"

    async def go() -> tuple[float, bool, bool, str]:
        invoker = ServiceInvoker(slow)
        call = asyncio.create_task(invoker.call({}, {}))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        healthy = await invoker.health()
        elapsed = time.monotonic() - started
        busy = invoker.thread_busy
        result = await call
        invoker.shutdown()
        return elapsed, healthy, busy, result

    elapsed, healthy, busy, result = asyncio.run(go())
    assert healthy and busy and result == "done"
    assert elapsed < 0.2


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


def test_quick_plain_calls_move_onto_the_loop_and_a_slow_one_sends_them_back() -> None:
    delay = {"s": 0.0}

    def handler(inputs: dict[str, Any], parameters: dict[str, Any]) -> str:
        if delay["s"]:
            time.sleep(delay["s"])
        return threading.current_thread().name

    async def go() -> tuple[list[str], str, str, str, str]:
        invoker = ServiceInvoker(handler)
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
        invoker = ServiceInvoker(handler)
        try:
            for _ in range(QUICK_STREAK):
                await invoker.call({}, {})
            ready_idle = invoker.inline_ready
            invoker._quick_streak = QUICK_STREAK  # as if the blocked call had not reset it
            blocked = asyncio.ensure_future(invoker._in_thread(handler, {"block": True}, {}))
            await asyncio.sleep(0.05)
            ready_busy = invoker.inline_ready
            gate.set()
            return ready_idle, ready_busy, await blocked
        finally:
            invoker.shutdown()

    ready_idle, ready_busy, _ = asyncio.run(go())
    assert ready_idle is True
    assert ready_busy is False
