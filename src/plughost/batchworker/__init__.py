"""``python -I -m plughost.batchworker``: one batch worker process (see :mod:`.main`)."""
