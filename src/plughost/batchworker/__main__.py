"""``python -m plughost.batchworker``: run one batch worker process."""

from plughost.batchworker.main import main

raise SystemExit(main())
