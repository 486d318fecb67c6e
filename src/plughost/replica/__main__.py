"""``python -m plughost.replica``: run one replica process."""

from plughost.replica.main import main

raise SystemExit(main())
