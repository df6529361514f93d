"""The `vidfarm` command: `app.py` is the root, one module per command group."""
