"""``python -m loadgrade``: the same command line as ``loadgrade`` (see :mod:`loadgrade.cli`)."""

import sys

from loadgrade.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m loadgrade"))
