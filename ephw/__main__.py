"""``python -m ephw ...``: the ``ephw`` command, also as ``torchrun --nproc-per-node N -m ephw ...``."""

from __future__ import annotations

import sys

from ephw.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
