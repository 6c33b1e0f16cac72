"""``python -m sparseopt``: the same command line as the ``sparseopt`` script."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
