"""``python -I -m plughost.batch.worker``: one batch worker process (see :mod:`.main`)."""
