"""``python -m mlpkit``: the same as the ``mlpkit`` command."""

from __future__ import annotations

import sys

from mlpkit.cli import main

if __name__ == "__main__":
    sys.exit(main())
