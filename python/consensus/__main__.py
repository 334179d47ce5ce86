"""``python -m consensus``: the command-line interface."""

from consensus.cli import main

raise SystemExit(main())
