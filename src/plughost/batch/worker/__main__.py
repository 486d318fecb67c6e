"""``python -m plughost.batch.worker``: run one batch worker process."""

from plughost.batch.worker.main import main

raise SystemExit(main())
