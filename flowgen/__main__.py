"""``python -m flowgen``: the command line (see `flowgen.cli`)."""

from flowgen.cli import main

raise SystemExit(main())
