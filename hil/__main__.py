"""`python -m hil board ...`: see hil/cli.py."""

from hil.cli import main

raise SystemExit(main())
