"""Replica output kept per release and replica: :mod:`.store` on disk,
:mod:`.output` the caps between a replica's pipe and the store, :mod:`.tags` the stream tags
the worker writes (imported by the replica process: keep it free of imports)."""
