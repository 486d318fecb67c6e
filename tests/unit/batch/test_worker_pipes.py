"""The batch worker's pipes: container requests out and their replies back while the frame
loop reads init and chunk frames, over real OS pipes."""

from __future__ import annotations

import os
import threading

from plughost.batch.protocol import encode_frame, read_frame
from plughost.batch.worker.pipes import PipeLink


def test_replies_resolve_calls_and_other_frames_reach_the_loop() -> None:
    server_to_worker = os.pipe()
    worker_to_server = os.pipe()
    stdin = os.fdopen(server_to_worker[0], "rb")
    out = os.fdopen(worker_to_server[1], "wb")
    feed = os.fdopen(server_to_worker[1], "wb")
    back = os.fdopen(worker_to_server[0], "rb")
    link = PipeLink(stdin, out)
    link.start()
    try:
        future = link.submit({"target": "secrets.get", "args": {"name": "k"}})
        frame = read_frame(back)
        assert frame is not None
        header, _ = frame
        assert header["type"] == "container" and header["request"]["args"] == {"name": "k"}
        feed.write(encode_frame({"type": "chunk", "chunk": 3}, b"rows"))
        feed.write(
            encode_frame(
                {
                    "type": "container_reply",
                    "cid": header["cid"],
                    "reply": {"ok": True, "result": "v"},
                }
            )
        )
        feed.flush()
        assert future.result(5) == {"ok": True, "result": "v"}
        assert link.next_frame() == ({"type": "chunk", "chunk": 3}, b"rows")
        waiting = link.submit({"target": "secrets.list", "args": {}})
        read_frame(back)
        feed.close()  # the server ends the job: what still waits fails, the loop sees the end
        assert link.next_frame() is None
        assert waiting.result(5)["error"]["type"] == "ContainerUnavailable"
        after = link.submit({"target": "secrets.list", "args": {}})
        assert after.result(5)["ok"] is False
    finally:
        for stream in (stdin, out, back):
            stream.close()
        assert not [t for t in threading.enumerate() if t.name == "plughost-pipe" and t.is_alive()]
