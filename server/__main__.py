"""``python -m vecstore.server PATH --unix SOCK``: the same as ``vecstore serve`` (see cli/main.py)."""

import sys

from vecstore.cli.main import main

main(["serve", *sys.argv[1:]], prog_name="python -m vecstore.server")
