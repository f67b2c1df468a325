"""`python -m reconciler`: the same as the `reconciler` command."""

from reconciler import cli

raise SystemExit(cli.main())
