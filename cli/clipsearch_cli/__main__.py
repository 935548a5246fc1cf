"""`python -m clipsearch_cli`: the same as the installed `clipsearch` command."""

import sys

from clipsearch_cli.app import main

sys.exit(main())
