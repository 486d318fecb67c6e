"""Malicious plugins that try to reach the network: listeners the test runs on the host (TCP,
UDP, a Unix socket file, an abstract Unix socket), the server's own API, another replica's
socket, DNS. The listeners count what reaches them; the test requires zero."""

from __future__ import annotations

from sec_support import Payload

C = "network"

NETWORK_PAYLOADS = [
    Payload("tcp_connect", C, '''
import socket

def attack(ctx):
    with socket.create_connection(("127.0.0.1", ctx["tcp_port"]), timeout=2) as s:
        s.sendall(b"hello from the sandbox")
    return {"escaped": True}
'''),
    Payload("urllib_http", C, '''
import urllib.request

def attack(ctx):
    urllib.request.urlopen("http://127.0.0.1:%d/" % ctx["tcp_port"], timeout=2)
    return {"escaped": True}
'''),
    Payload("http_client", C, '''
import http.client

def attack(ctx):
    conn = http.client.HTTPConnection("127.0.0.1", ctx["tcp_port"], timeout=2)
    conn.request("GET", "/exfil")
    return {"escaped": True}
'''),
    Payload("asyncio_open_connection", C, '''
import asyncio

def attack(ctx):
    async def go():
        reader, writer = await asyncio.open_connection("127.0.0.1", ctx["tcp_port"])
        writer.close()
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(go(), 2))
    finally:
        loop.close()
    return {"escaped": True}
'''),
    Payload("udp_datagram", C, '''
import socket

def attack(ctx):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"exfil", ("127.0.0.1", ctx["udp_port"]))
    return {"escaped": True}
'''),
    Payload("ipv6_loopback", C, '''
import socket

def attack(ctx):
    with socket.create_connection(("::1", ctx["tcp_port"]), timeout=2):
        pass
    return {"escaped": True}
'''),
    Payload("raw_socket_syscall", C, '''
import ctypes

def attack(ctx):
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.syscall(41, 2, 1, 0)
    return {"fd": fd, "errno": ctypes.get_errno(), "escaped": fd >= 0}
'''),
    Payload("socket_family_high_bits", C, '''
import ctypes

def attack(ctx):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    fd = libc.syscall(ctypes.c_long(41), ctypes.c_long(2 | (1 << 32)), ctypes.c_long(1),
                      ctypes.c_long(0))
    return {"fd": fd, "errno": ctypes.get_errno(), "escaped": fd >= 0}
'''),
    Payload("host_unix_socket", C, '''
import socket

def attack(ctx):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect(ctx["unix_path"])
    return {"escaped": True}
'''),
    Payload("abstract_unix_socket", C, '''
import socket

def attack(ctx):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect("\\0" + ctx["abstract_name"])
    return {"escaped": True}
'''),
    Payload("neighbour_replica_socket", C, '''
import socket

def attack(ctx):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect(ctx["neighbour_socket"])
    return {"escaped": True}
'''),
    Payload("server_api", C, '''
import socket

def attack(ctx):
    with socket.create_connection(("127.0.0.1", ctx["server_port"]), timeout=2) as s:
        s.sendall(b"GET /healthz HTTP/1.0\\r\\n\\r\\n")
        answer = s.recv(200)
    return {"answer": answer.decode("latin-1"), "escaped": True}
'''),
    Payload("dns_lookup", C, '''
import socket

def attack(ctx):
    infos = socket.getaddrinfo("example.com", 80)
    return {"infos": repr(infos)[:300], "escaped": True}
'''),
    Payload("netlink_socket", C, '''
import socket

def attack(ctx):
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    return {"fd": s.fileno(), "escaped": True}
'''),
    Payload("list_interfaces", C, '''
def attack(ctx):
    with open("/proc/net/dev") as f:
        names = [line.split(":")[0].strip() for line in f.read().splitlines()[2:]]
    return {"interfaces": names, "escaped": names != ["lo"]}
'''),
    Payload("manifest_phones_home", C, '''
def attack(ctx):
    import socket
    with socket.create_connection(("127.0.0.1", ctx["tcp_port"]), timeout=2):
        pass
    return {"escaped": True}
''', phase="manifest"),
    Payload("import_time_connect", C, '''
import socket

def attack(ctx):
    with socket.create_connection(("127.0.0.1", ctx["tcp_port"]), timeout=2):
        pass
    return {"escaped": True}
''', phase="import"),
]
