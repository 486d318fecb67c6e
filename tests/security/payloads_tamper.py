"""Malicious plugins that try to tamper with the server, the machine or another plugin: kill
processes, write into $PLUGHOST_HOME, another plugin's folder, the interpreter's packages or
plughost itself, lift their own limits, or reach kernel interfaces. The test checks the host
side: files absent or unchanged, server and neighbour still answering."""

from __future__ import annotations

from sec_support import Payload

C = "tamper"

TAMPER_PAYLOADS = [
    Payload("kill_every_visible_pid", C, '''
import os
import signal

def attack(ctx):
    killed = []
    for pid in [1, ctx["server_pid"], ctx["neighbour_pid"], *range(2, 400)]:
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except OSError:
            pass
    return {"killed": killed, "escaped": bool(killed)}
'''),
    Payload("kill_server_by_host_pid", C, '''
import os

def attack(ctx):
    os.kill(ctx["server_pid"], 9)
    return {"escaped": True}
'''),
    Payload("kill_neighbour_by_host_pid", C, '''
import os

def attack(ctx):
    os.kill(ctx["neighbour_pid"], 9)
    return {"escaped": True}
'''),
    Payload("kill_minus_one", C, '''
import os
import signal

def attack(ctx):
    os.kill(-1, signal.SIGKILL)
    return {"escaped": True}
'''),
    Payload("kill_parent", C, '''
import os

def attack(ctx):
    os.kill(os.getppid(), 9)
    return {"escaped": True}
'''),
    Payload("append_to_neighbour_code", C, '''
def attack(ctx):
    with open(ctx["neighbour_dir"] + "/realtime.py", "a") as f:
        f.write("\\nraise SystemExit('owned')\\n")
    return {"escaped": True}
'''),
    Payload("write_into_home", C, '''
def attack(ctx):
    with open(ctx["home"] + "/pwned-" + ctx["case"], "w") as f:
        f.write("pwned")
    return {"escaped": True}
'''),
    Payload("write_host_marker", C, '''
def attack(ctx):
    with open(ctx["marker"], "w") as f:
        f.write("pwned")
    return {"escaped": True}
'''),
    Payload("drop_pth_in_site_packages", C, '''
def attack(ctx):
    with open(ctx["site_packages"] + "/pwned_" + ctx["case"] + ".pth", "w") as f:
        f.write("import os; os.system('id')\\n")
    return {"escaped": True}
'''),
    Payload("write_into_plughost_package", C, '''
def attack(ctx):
    with open(ctx["plughost_dir"] + "/pwned_" + ctx["case"] + ".py", "w") as f:
        f.write("raise SystemExit\\n")
    return {"escaped": True}
'''),
    Payload("chmod_own_folder", C, '''
import os

def attack(ctx):
    os.chmod(".", 0o777)
    return {"escaped": True}
'''),
    Payload("rename_own_code", C, '''
import os

def attack(ctx):
    os.rename("realtime.py", "gone.py")
    return {"escaped": True}
'''),
    Payload("write_sandbox_root", C, '''
def attack(ctx):
    with open("/evil", "w") as f:
        f.write("x")
    return {"escaped": True}
'''),
    Payload("raise_own_rlimits", C, '''
import resource

def attack(ctx):
    inf = resource.RLIM_INFINITY
    # RLIMIT_FSIZE: set under every memory layer (RLIMIT_AS only without cgroups, issue 28)
    resource.setrlimit(resource.RLIMIT_FSIZE, (inf, inf))
    return {"escaped": True}
'''),
    Payload("leave_own_cgroup", C, '''
def attack(ctx):
    # leave the replica's cgroup (into the root one) or raise its memory limit (issue 28)
    own = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, names, path = line.strip().split(":", 2)
            for name in names.split(",") or [""]:
                own[name] = path
    done = []
    for target, value in (("memory/cgroup.procs", "0"), ("pids/cgroup.procs", "0"),
                          ("cgroup.procs", "0"),
                          ("memory" + own.get("memory", "/") + "/memory.limit_in_bytes", "-1"),
                          ("pids" + own.get("pids", "/") + "/pids.max", "max"),
                          (own.get("", "/").lstrip("/") + "/memory.max", "max")):
        try:
            with open("/sys/fs/cgroup/" + target, "w") as f:
                f.write(value)
            done.append(target)
        except OSError:
            pass
    return {"escaped": bool(done), "done": done}
'''),
    Payload("join_host_network_namespace", C, '''
import ctypes
import os

def attack(ctx):
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open("/proc/1/ns/net", os.O_RDONLY)
    rc = libc.setns(fd, 0)
    return {"rc": rc, "escaped": rc == 0}
'''),
    Payload("kernel_tunables", C, '''
def attack(ctx):
    out = {}
    for path in ("/proc/sys/kernel/hostname", "/proc/sysrq-trigger", "/proc/sys/vm/drop_caches"):
        try:
            with open(path, "w") as f:
                f.write("1")
            out[path] = "written"
        except OSError as exc:
            out[path] = repr(exc)
    return {"out": out, "escaped": "written" in out.values()}
'''),
    Payload("cgroup_escape", C, '''
import os

def attack(ctx):
    with open("/sys/fs/cgroup/cgroup.procs", "w") as f:
        f.write(str(os.getpid()))
    return {"escaped": True}
'''),
    Payload("forbidden_syscalls", C, '''
import ctypes

def attack(ctx):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    calls = {"keyctl": (250, 0, 0, 0, 0), "bpf": (321, 0, 0, 0), "perf_event_open": (298, 0, 0, -1, -1, 0),
             "io_uring_setup": (425, 8, 0), "userfaultfd": (323, 0), "kexec_load": (246, 0, 0, 0, 0),
             "init_module": (175, 0, 0, 0), "reboot": (169, 0, 0, 0, 0), "pivot_root": (155, 0, 0)}
    out = {}
    for name, args in calls.items():
        rc = libc.syscall(*[ctypes.c_long(a) for a in args])
        out[name] = [rc, ctypes.get_errno()]
    return {"out": out, "escaped": any(rc >= 0 for rc, _ in out.values())}
'''),
    Payload("tiocsti_injection", C, '''
import fcntl
import termios

def attack(ctx):
    for fd in (0, 1, 2):
        try:
            fcntl.ioctl(fd, termios.TIOCSTI, b"x")
            return {"fd": fd, "escaped": True}
        except OSError:
            continue
    return {"escaped": False}
'''),
    Payload("import_time_writes_home", C, '''
with open(CTX["home"] + "/pwned-import", "w") as f:
    f.write("pwned")

def attack(ctx):
    return {"escaped": True}
'''),
    Payload("manifest_writes_home", C, '''
def attack(ctx):
    out = {}
    for path in (ctx["home"] + "/pwned-manifest", ctx["marker"], "/plugin/pwned"):
        try:
            with open(path, "w") as f:
                f.write("pwned")
            out[path] = "written"
        except OSError as exc:
            out[path] = repr(exc)
    return {"out": out, "escaped": "written" in out.values()}
''', phase="manifest"),
]
