"""``python -m analysis``: see :mod:`loadgrade.analysis.cli`."""

import sys

from loadgrade.analysis.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m loadgrade.analysis"))
