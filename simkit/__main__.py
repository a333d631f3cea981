"""``python -m simkit`` runs the command-line interface."""

from simkit.cli import main

raise SystemExit(main())
