"""`python -m foveal` runs the command line."""

from foveal.cli.main import main

main()
