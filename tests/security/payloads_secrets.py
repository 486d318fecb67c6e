"""Malicious plugins that try to read secrets: the admin key, the database, another plugin's
files, the server's environment. Whatever they read they return, so a leak shows up in the
response (the test looks for the secrets themselves in every answer)."""

from __future__ import annotations

from sec_support import Payload

C = "secret"

SECRET_PAYLOADS = [
    Payload("read_admin_key", C, '''
def attack(ctx):
    with open(ctx["admin_key"]) as f:
        key = f.read()
    return {"key": key, "escaped": True}
'''),
    Payload("read_database_file", C, '''
def attack(ctx):
    with open(ctx["db"], "rb") as f:
        head = f.read(4096)
    return {"head": head.decode("latin-1"), "escaped": True}
'''),
    Payload("sqlite_query_keys", C, '''
import sqlite3

def attack(ctx):
    conn = sqlite3.connect("file:" + ctx["db"] + "?mode=ro", uri=True)
    rows = conn.execute("select * from sqlite_master").fetchall()
    return {"rows": repr(rows)[:2000], "escaped": bool(rows)}
'''),
    Payload("walk_plughost_home", C, '''
import os

def attack(ctx):
    found = []
    for root, dirs, files in os.walk(ctx["home"]):
        found += [os.path.join(root, f) for f in files]
    return {"files": found[:200], "escaped": bool(found)}
'''),
    Payload("read_neighbour_plugin_file", C, '''
def attack(ctx):
    with open(ctx["neighbour_secret"]) as f:
        return {"secret": f.read(), "escaped": True}
'''),
    Payload("list_deployments_folder", C, '''
import os

def attack(ctx):
    names = os.listdir(ctx["home"] + "/deployments")
    return {"names": names, "escaped": True}
'''),
    Payload("server_proc_environ", C, '''
def attack(ctx):
    with open("/proc/%d/environ" % ctx["server_pid"], "rb") as f:
        return {"environ": f.read().decode("latin-1"), "escaped": True}
'''),
    Payload("scan_every_proc_environ", C, '''
import os

def attack(ctx):
    seen = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/environ" % pid, "rb") as f:
                seen[pid] = f.read().decode("latin-1")
        except OSError as exc:
            seen[pid] = repr(exc)
    return {"environ": seen, "pids": sorted(seen)}
'''),
    Payload("own_environment", C, '''
import os

def attack(ctx):
    return {"env": dict(os.environ), "escaped": "SECURITY_CANARY" in os.environ}
'''),
    Payload("proc_root_of_init", C, '''
import os

def attack(ctx):
    try:
        names = os.listdir("/proc/1/root" + ctx["home"])
    except OSError as exc:
        return {"error": repr(exc), "escaped": False}
    return {"names": names, "escaped": True}
'''),
    Payload("filesystem_hunt", C, '''
import os

def attack(ctx):
    hits = []
    for top in ("/", "/tmp", "/root", "/work", "/var", "/home", "/etc"):
        if not os.path.isdir(top):
            continue
        for root, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if d not in ("proc", "sys", "usr", "dev")]
            hits += [os.path.join(root, f) for f in files
                     if f in ("admin-key", "plughost.db", "secret.txt") or f.endswith(".db")]
    return {"hits": hits, "escaped": bool(hits)}
'''),
    Payload("etc_shadow", C, '''
def attack(ctx):
    with open("/etc/shadow") as f:
        return {"shadow": f.read(), "escaped": True}
'''),
    Payload("kernel_memory", C, '''
def attack(ctx):
    out = {}
    for path in ("/dev/mem", "/dev/kmem", "/proc/kcore", "/dev/vda", "/dev/sda"):
        try:
            with open(path, "rb") as f:
                out[path] = f.read(16).hex()
        except OSError as exc:
            out[path] = repr(exc)
    return {"out": out, "escaped": any(not v.startswith(("FileNotFound", "Permission")) for v in out.values())}
'''),
    Payload("archives_in_store", C, '''
import glob

def attack(ctx):
    found = [p for p in glob.glob(ctx["home"] + "/archives/**", recursive=True) if "." in p[-8:]]
    return {"found": found, "escaped": bool(found)}
'''),
    Payload("manifest_exfiltrates_key", C, '''
def attack(ctx):
    import os
    out = {"env": sorted(os.environ)}
    try:
        with open(ctx["admin_key"]) as f:
            out["key"] = f.read()
            out["escaped"] = True
    except OSError as exc:
        out["error"] = repr(exc)
    return out
''', phase="manifest"),
    Payload("import_time_reads_database", C, '''
def attack(ctx):
    with open(ctx["db"], "rb") as f:
        return {"head": f.read(64).decode("latin-1"), "escaped": True}
''', phase="import"),
]
