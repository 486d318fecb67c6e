"""Malicious plugins that try to start a shell (or any other program) from inside the replica.

Every one runs ``ctx["cmd"]``: ``echo pwned > <evidence in the sandbox's /tmp>; touch <host
marker>``. ``shell_escaped()`` (from the plugin template) reports whether the evidence file
appeared; the test also checks the host marker.
"""

from __future__ import annotations

from sec_support import Payload

C = "escape"

UTF7_REALTIME = (
    b"# coding: utf_7\n"
    b"CTX = %(ctx)s\n"
    b"# nothing to see here +AAo-import os+AAo-os.system(CTX+AFs-'cmd'+AF0-)\n"
    b"try:\n"
    b"    from shared.plugins.inference.serve import BaseInferenceService\n"
    b"except ImportError:\n"
    b"    class BaseInferenceService:\n"
    b"        pass\n"
    b"class Service(BaseInferenceService):\n"
    b"    def run_inference(self, inputs, parameters):\n"
    b"        import os\n"
    b"        return {'escaped': os.path.exists(CTX+AFs-'evidence'+AF0-)}\n"
)

ESCAPE_PAYLOADS = [
    Payload("os_system", C, '''
def attack(ctx):
    import os
    code = os.system(ctx["cmd"])
    return {"code": code, "escaped": shell_escaped()}
'''),
    Payload("from_os_import_alias", C, '''
from os import system as harmless

def attack(ctx):
    harmless(ctx["cmd"])
    return {"escaped": shell_escaped()}
'''),
    Payload("getattr_concat", C, '''
import os

def attack(ctx):
    getattr(os, "sys" + "tem")(ctx["cmd"])
    return {"escaped": shell_escaped()}
'''),
    Payload("importlib_subprocess", C, '''
import importlib

def attack(ctx):
    sp = importlib.import_module("subpro" + "cess")
    sp.run(["/bin/sh", "-c", ctx["cmd"]], check=False)
    return {"escaped": shell_escaped()}
'''),
    Payload("dunder_import_via_builtins_dict", C, '''
import builtins

def attack(ctx):
    imp = vars(builtins)["__imp" + "ort__"]
    imp("os").system(ctx["cmd"])
    return {"escaped": shell_escaped()}
'''),
    Payload("subprocess_popen", C, '''
import subprocess

def attack(ctx):
    subprocess.Popen(["/bin/sh", "-c", ctx["cmd"]]).wait(5)
    return {"escaped": shell_escaped()}
'''),
    Payload("subprocess_shell_true", C, '''
import subprocess

def attack(ctx):
    out = subprocess.check_output(ctx["cmd"] + "; id", shell=True)
    return {"out": out.decode(), "escaped": shell_escaped()}
'''),
    Payload("os_popen", C, '''
import os

def attack(ctx):
    out = os.popen(ctx["cmd"]).read()
    return {"out": out, "escaped": shell_escaped()}
'''),
    Payload("fork_then_execv", C, '''
import os

def attack(ctx):
    pid = os.fork()
    if pid == 0:
        try:
            os.execv("/bin/sh", ["sh", "-c", ctx["cmd"]])
        finally:
            os._exit(7)
    _, status = os.waitpid(pid, 0)
    return {"status": status, "escaped": shell_escaped()}
'''),
    Payload("posix_spawn", C, '''
import os

def attack(ctx):
    pid = os.posix_spawn("/bin/sh", ["sh", "-c", ctx["cmd"]], {})
    os.waitpid(pid, 0)
    return {"escaped": shell_escaped()}
'''),
    Payload("spawnv", C, '''
import os

def attack(ctx):
    code = os.spawnv(os.P_WAIT, "/bin/sh", ["sh", "-c", ctx["cmd"]])
    return {"code": code, "escaped": shell_escaped()}
'''),
    Payload("fexecve", C, '''
import os

def attack(ctx):
    fd = os.open("/bin/sh", os.O_RDONLY)
    pid = os.fork()
    if pid == 0:
        try:
            os.execve(fd, ["sh", "-c", ctx["cmd"]], {})
        finally:
            os._exit(7)
    os.waitpid(pid, 0)
    return {"escaped": shell_escaped()}
'''),
    Payload("pty_spawn", C, '''
import pty

def attack(ctx):
    status = pty.spawn(["/bin/sh", "-c", ctx["cmd"]])
    return {"status": status, "escaped": shell_escaped()}
'''),
    Payload("asyncio_subprocess", C, '''
import asyncio

def attack(ctx):
    async def go():
        proc = await asyncio.create_subprocess_exec("/bin/sh", "-c", ctx["cmd"])
        return await proc.wait()
    loop = asyncio.new_event_loop()
    try:
        code = loop.run_until_complete(go())
    finally:
        loop.close()
    return {"code": code, "escaped": shell_escaped()}
'''),
    Payload("ctypes_libc_system", C, '''
import ctypes

def attack(ctx):
    code = ctypes.CDLL(None).system(ctx["cmd"].encode())
    return {"code": code, "escaped": shell_escaped()}
'''),
    Payload("ctypes_computed_import", C, '''
def attack(ctx):
    mod = __import__("ct" + "ypes")
    libc = getattr(mod, "CD" + "LL")("libc.so.6")
    code = libc.system(ctx["cmd"].encode())
    return {"code": code, "escaped": shell_escaped()}
'''),
    Payload("ctypes_raw_execve_syscall", C, '''
import ctypes
import os

def attack(ctx):
    libc = ctypes.CDLL(None, use_errno=True)
    argv = (ctypes.c_char_p * 4)(b"sh", b"-c", ctx["cmd"].encode(), None)
    envp = (ctypes.c_char_p * 1)(None)
    pid = os.fork()
    if pid == 0:
        libc.syscall(59, b"/bin/sh", argv, envp)
        os._exit(ctypes.get_errno())
    _, status = os.waitpid(pid, 0)
    return {"child_errno": os.waitstatus_to_exitcode(status), "escaped": shell_escaped()}
'''),
    Payload("multiprocessing_spawn_context", C, '''
import multiprocessing

def attack(ctx):
    import os
    proc = multiprocessing.get_context("spawn").Process(target=os.system, args=(ctx["cmd"],))
    proc.start()
    proc.join(5)
    return {"escaped": shell_escaped()}
'''),
    Payload("multiprocessing_fork_context", C, '''
import multiprocessing
import os

def attack(ctx):
    proc = multiprocessing.get_context("fork").Process(target=os.system, args=(ctx["cmd"],))
    proc.start()
    proc.join(5)
    return {"exitcode": proc.exitcode, "escaped": shell_escaped()}
'''),
    Payload("breakpoint_with_env", C, '''
import os

def attack(ctx):
    os.environ["PYTHONBREAKPOINT"] = "os.system"
    try:
        breakpoint(ctx["cmd"])
    except Exception as exc:
        return {"error": repr(exc), "escaped": shell_escaped()}
    return {"escaped": shell_escaped()}
'''),
    Payload("breakpointhook_replaced", C, '''
import os
import sys

def attack(ctx):
    sys.breakpointhook = os.system
    breakpoint(ctx["cmd"])
    return {"escaped": shell_escaped()}
'''),
    Payload("pickle_reduce", C, '''
import os
import pickle

class Boom:
    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))

def attack(ctx):
    pickle.loads(pickle.dumps(Boom(ctx["cmd"])))
    return {"escaped": shell_escaped()}
'''),
    Payload("marshal_code_object", C, '''
import marshal

def attack(ctx):
    code = compile("import os\\nos.system(CMD)", "<m>", "exec")
    exec(marshal.loads(marshal.dumps(code)), {"CMD": ctx["cmd"]})
    return {"escaped": shell_escaped()}
'''),
    Payload("compile_exec", C, '''
def attack(ctx):
    exec(compile("__import__('os').system(CMD)", "<x>", "exec"), {"CMD": ctx["cmd"]})
    return {"escaped": shell_escaped()}
'''),
    Payload("function_from_code_object", C, '''
import types

def attack(ctx):
    code = compile("import os\\nos.system(CMD)", "<f>", "exec")
    types.FunctionType(code, {"CMD": ctx["cmd"]})()
    return {"escaped": shell_escaped()}
'''),
    Payload("eval_string", C, '''
def attack(ctx):
    eval("__import__('os').system(" + repr(ctx["cmd"]) + ")")
    return {"escaped": shell_escaped()}
'''),
    Payload("subclasses_walk_to_globals", C, '''
def attack(ctx):
    for cls in ().__class__.__base__.__subclasses__():
        if cls.__name__ == "_wrap_close":
            cls.__init__.__globals__["system"](ctx["cmd"])
            break
    return {"escaped": shell_escaped()}
'''),
    Payload("sys_modules_lookup", C, '''
import sys

def attack(ctx):
    sys.modules["os"].system(ctx["cmd"])
    return {"escaped": shell_escaped()}
'''),
    Payload("posix_module", C, '''
import posix

def attack(ctx):
    posix.system(ctx["cmd"])
    return {"escaped": shell_escaped()}
'''),
    Payload("timeit_statement", C, '''
import timeit

def attack(ctx):
    timeit.timeit("__import__('os').system(" + repr(ctx["cmd"]) + ")", number=1)
    return {"escaped": shell_escaped()}
'''),
    Payload("code_interpreter", C, '''
import code

def attack(ctx):
    code.InteractiveInterpreter().runsource("import os; os.system(" + repr(ctx["cmd"]) + ")")
    return {"escaped": shell_escaped()}
'''),
    Payload("runpy_from_tmp", C, '''
import os
import runpy

def attack(ctx):
    with open("/tmp/stage2.py", "w") as f:
        f.write("import os\\nos.system(" + repr(ctx["cmd"]) + ")\\n")
    runpy.run_path("/tmp/stage2.py")
    return {"escaped": shell_escaped()}
'''),
    Payload("decorator_call", C, '''
import os

def attack(ctx):
    @(lambda f: os.system(ctx["cmd"]))
    def nothing():
        pass
    return {"escaped": shell_escaped()}
'''),
    Payload("utf7_hidden_line", C, "", raw_realtime=UTF7_REALTIME),
    Payload("shipped_sitecustomize", C, '''
def attack(ctx):
    return {"escaped": shell_escaped()}
''', files={
        "sitecustomize.py": "import os\nos.system('echo pwned > /tmp/pwned_site')\n",
        "usercustomize.py": "import os\nos.system('echo pwned > /tmp/pwned_site')\n",
    }),
    Payload("setuid_root", C, '''
import os

def attack(ctx):
    try:
        os.setuid(0)
    except OSError as exc:
        return {"error": repr(exc), "uid": os.getuid(), "escaped": os.getuid() == 0}
    return {"uid": os.getuid(), "escaped": os.getuid() == 0}
'''),
    Payload("unshare_user_namespace", C, '''
import ctypes

def attack(ctx):
    libc = ctypes.CDLL(None, use_errno=True)
    rc = libc.unshare(0x10000000 | 0x00020000)
    return {"rc": rc, "errno": ctypes.get_errno(), "escaped": rc == 0}
'''),
    Payload("clone_new_namespaces", C, '''
import ctypes

def attack(ctx):
    libc = ctypes.CDLL(None, use_errno=True)
    rc = libc.syscall(56, 0x10000000 | 0x40000000 | 17, 0, 0, 0, 0)
    if rc == 0:
        import os
        os._exit(0)
    return {"rc": rc, "errno": ctypes.get_errno(), "escaped": rc > 0}
'''),
    Payload("ptrace_init", C, '''
import ctypes

def attack(ctx):
    libc = ctypes.CDLL(None, use_errno=True)
    rc = libc.ptrace(16, 1, 0, 0)
    return {"rc": rc, "errno": ctypes.get_errno(), "escaped": rc == 0}
'''),
    Payload("mount_tmpfs", C, '''
import ctypes

def attack(ctx):
    libc = ctypes.CDLL(None, use_errno=True)
    rc = libc.mount(b"none", b"/plugin", b"tmpfs", 0, None)
    return {"rc": rc, "errno": ctypes.get_errno(), "escaped": rc == 0}
'''),
]
