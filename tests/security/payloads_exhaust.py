"""Malicious plugins that try to exhaust memory, CPU, processes, file descriptors or disk.

The security server runs with small limits (see the test module): 2 GiB of address space,
48 processes per replica, 1024 open files, 64 MiB files and private /tmp, a 3 s call timeout
and an 8 s start timeout. ``bounds`` hold the numbers a payload reports against those limits.
"""

from __future__ import annotations

from sec_support import Payload

C = "exhaust"

EXHAUST_PAYLOADS = [
    Payload("memory_one_huge_block", C, '''
def attack(ctx):
    block = bytearray(16 * 1024 ** 3)
    return {"escaped": True, "size": len(block)}
'''),
    Payload("memory_gradual_touch", C, '''
def attack(ctx):
    chunks = []
    try:
        while len(chunks) < 400:
            chunks.append(b"x" * (64 * 1024 * 1024))
    except MemoryError:
        pass
    held = len(chunks) * 64
    chunks.clear()
    return {"held_mb": held, "escaped": held > 2048}
''', bounds={"held_mb": 2048}),
    Payload("memory_anonymous_mmap", C, '''
import mmap

def attack(ctx):
    m = mmap.mmap(-1, 12 * 1024 ** 3)
    # reserving address space is allowed under a cgroup (issue 28); using it is not
    for i in range(0, len(m), 4096):
        m[i] = 1
    return {"escaped": True, "size": len(m)}
'''),
    Payload("memory_at_import", C, '''
HOG = bytearray(16 * 1024 ** 3)

def attack(ctx):
    return {"escaped": True}
'''),
    Payload("cpu_spin_in_call", C, '''
def attack(ctx):
    n = 0
    while True:
        n += 1
'''),
    Payload("sleep_forever_in_call", C, '''
import time

def attack(ctx):
    time.sleep(3600)
    return {"escaped": True}
'''),
    Payload("cpu_spin_at_import", C, '''
while True:
    pass

def attack(ctx):
    return {"escaped": True}
'''),
    Payload("fork_bomb", C, '''
import os
import time

def attack(ctx):
    me = os.getpid()
    deadline = time.time() + 2
    failures = 0
    while time.time() < deadline:
        try:
            os.fork()
        except OSError:
            failures += 1
            time.sleep(0.02)
    if os.getpid() != me:
        time.sleep(1)
        os._exit(0)
    alive = [p for p in os.listdir("/proc") if p.isdigit()]
    return {"processes": len(alive), "fork_failures": failures > 0}
''', bounds={"processes": 49}),
    Payload("thread_bomb", C, '''
import threading
import time

def attack(ctx):
    started = 0
    try:
        while started < 5000:
            threading.Thread(target=time.sleep, args=(20,), daemon=True).start()
            started += 1
    except RuntimeError as exc:
        return {"threads": started, "error": repr(exc)}
    return {"threads": started}
''', bounds={"threads": 48}),
    Payload("file_descriptors", C, '''
import os

def attack(ctx):
    fds = []
    error = None
    try:
        while len(fds) < 100000:
            fds.append(os.open("/dev/null", os.O_RDONLY))
    except OSError as exc:
        error = repr(exc)
    count = len(fds)
    for fd in fds:
        os.close(fd)
    return {"opened": count, "error": error}
''', bounds={"opened": 1024}),
    Payload("fill_private_tmp", C, '''
import os

def attack(ctx):
    total = 0
    chunk = b"z" * (1024 * 1024)
    try:
        for i in range(10000):
            with open("/tmp/fill-%d" % i, "wb") as f:
                for _ in range(8):
                    f.write(chunk)
                    total += 1
    except OSError as exc:
        return {"written_mb": total, "error": repr(exc)}
    return {"written_mb": total}
''', bounds={"written_mb": 64}),
    Payload("one_huge_file", C, '''
def attack(ctx):
    total = 0
    chunk = b"z" * (1024 * 1024)
    try:
        with open("/tmp/huge", "wb") as f:
            while total < 100000:
                f.write(chunk)
                f.flush()
                total += 1
    except OSError as exc:
        return {"written_mb": total, "error": repr(exc)}
    return {"written_mb": total}
''', bounds={"written_mb": 64}),
    Payload("fill_dev_shm", C, '''
def attack(ctx):
    total = 0
    chunk = b"z" * (1024 * 1024)
    try:
        for i in range(10000):
            with open("/dev/shm/fill-%d" % i, "wb") as f:
                for _ in range(8):
                    f.write(chunk)
                    total += 1
    except OSError as exc:
        return {"written_mb": total, "error": repr(exc)}
    return {"written_mb": total}
''', bounds={"written_mb": 64}),
    Payload("daemonised_grandchild", C, '''
import os
import time

def attack(ctx):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            while True:
                time.sleep(0.5)
        os._exit(0)
    time.sleep(0.2)
    return {"left_behind": True}
'''),
    Payload("stack_overflow_crash", C, '''
import sys

def attack(ctx):
    sys.setrecursionlimit(10 ** 8)
    def dive(n):
        return dive(n + 1) + 1
    return {"depth": dive(0)}
'''),
    Payload("segfault_via_ctypes", C, '''
import ctypes

def attack(ctx):
    value = ctypes.cast(16, ctypes.POINTER(ctypes.c_long)).contents.value
    return {"survived": value}
'''),
    Payload("manifest_memory_bomb", C, '''
HOG = bytearray(16 * 1024 ** 3)

def attack(ctx):
    return {"escaped": True}
''', phase="manifest"),
    Payload("manifest_cpu_spin", C, '''
while True:
    pass

def attack(ctx):
    return {"escaped": True}
''', phase="manifest"),
]
