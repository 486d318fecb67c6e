"""Containment of plugin code: every process that runs it goes through this package.

Two halves, kept apart so the replica side stays small and imports only the standard
library:

- the host side (:mod:`.host`, :mod:`.bwrap`, :mod:`.probe`, :mod:`.uids`) runs in the server:
  it measures at start-up which layers this machine provides, and wraps each plugin process
  in bubblewrap (mount, pid, ipc, uts and network namespaces; a read-only file system);
- the runner side (:mod:`.runner`, :mod:`.seccomp`, :mod:`.requirements`) runs inside the
  plugin process before any plugin code: it drops to an unprivileged uid, sets rlimits and
  ``no_new_privs``, and installs a seccomp filter.

SECURITY.md at the repository root describes the threat model and every layer.
"""

LAYERS = ("bwrap", "netns", "uid", "seccomp", "rlimits")
"""The layers reported by ``GET /healthz``, in order."""
