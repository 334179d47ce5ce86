"""``python -m consensus``: the command-line interface."""

from consensus.service import main

__all__: list[str] = []

raise SystemExit(main())
