"""`python -m vidfarm` is the `vidfarm` command."""

from vidfarm.cli import main

main()
