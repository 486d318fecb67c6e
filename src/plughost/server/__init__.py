"""The serve process's own parts: building the runtime in dependency order (:mod:`.wiring`),
the supervisor of ``--workers`` (:mod:`.supervisor`), the port keeper that holds the
listening socket across a crash (:mod:`.port_keeper`), the zero-downtime restart
(:mod:`.takeover`, :mod:`.handover`), and the observation side built beside the runtime."""
