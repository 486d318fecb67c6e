"""The replica process: loads a plugin's realtime.py and answers calls over a Unix socket.

Run as ``python -I -m plughost.replica --socket PATH [--plugin-dir DIR] [--init-kwargs JSON]
[--drain-timeout S]``; see :mod:`plughost.replica.main` for the start-up handshake and
:mod:`plughost.replica.protocol` for the wire format. Importing this package is cheap: the
client side imports the protocol module from here.
"""
