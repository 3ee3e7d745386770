"""``python -m analysis`` from the repository root: the same command as ``loadgrade report|check|compare``."""

import sys

from loadgrade.analysis.cli import main

if __name__ == "__main__":
    sys.exit(main())
