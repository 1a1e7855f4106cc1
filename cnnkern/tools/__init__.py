"""The `cnnkern` command (cli.py) and what its subcommands run: check.py (a reference model
against its plain-torch twin) and summary.py (the per-layer table)."""
