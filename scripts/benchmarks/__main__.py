"""``python -m scripts.benchmarks``: see the package docstring."""

import sys

from scripts.benchmarks.cli import main

sys.exit(main())
