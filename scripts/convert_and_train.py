#!/usr/bin/env python3
"""Convert a model to ONNX and train it: ``onnxgrad train`` as a script.

The model is an ONNX file or a MindSpore Cell / PyTorch module given as
``package.module:attribute``; the options are those of ``onnxgrad train``
(``--help`` lists them). With no arguments it trains the bundled MLP on
scikit-learn's 8x8 digits. The implementation is ``onnxgrad._train.train``.

Example:
    python scripts/convert_and_train.py --model mypkg.nets:LeNet --data digits.npz --epochs 5
"""

import sys

from onnxgrad.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
