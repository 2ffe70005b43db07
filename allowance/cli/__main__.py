"""`python -m allowance.cli`: the same as the `allowance` command."""

from allowance.cli import main

main()
