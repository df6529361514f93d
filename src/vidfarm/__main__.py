"""`python -m vidfarm` is the `vidfarm` command."""

from vidfarm.cli.app import main

main()
