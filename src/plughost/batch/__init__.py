"""Batch jobs: a plugin's pipeline.py over a data set.

Server side: :mod:`.formats` and :mod:`.reader` stream the input in chunks, :mod:`.runner`
feeds the chunks to sandboxed ``python -I -m plughost.batch.worker`` processes and writes
Parquet parts as results arrive, :mod:`.service` holds the use cases and the scheduler.
Worker side: :mod:`.pipeline` loads pipeline.py and runs ``prepare`` on a :mod:`.dataset`
then the steps; :mod:`.protocol` frames Arrow IPC both ways over the worker's pipes.
"""
