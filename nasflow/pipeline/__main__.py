"""``python -m nasflow.pipeline``: see :mod:`nasflow.pipeline.cli`."""

import sys

from nasflow.pipeline.cli import main

sys.exit(main())
