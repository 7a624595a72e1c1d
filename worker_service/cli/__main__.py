"""``python -m worker_service.cli``: the ``worker`` command where the console script is not installed."""

from worker_service.cli.main import main

raise SystemExit(main())
