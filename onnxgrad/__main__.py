"""``python -m onnxgrad``: the ``onnxgrad`` command."""

import sys

from onnxgrad.cli import main

if __name__ == "__main__":
    sys.exit(main())
