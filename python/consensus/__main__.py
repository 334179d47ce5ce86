"""``python -m consensus``: the command-line interface."""

from consensus.service import main

raise SystemExit(main())
