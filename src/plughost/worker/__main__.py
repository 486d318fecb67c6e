"""``python -m plughost.worker``: run one replica process."""

from plughost.worker.main import main

raise SystemExit(main())
