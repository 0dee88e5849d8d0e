"""Entry point: `python src/predict.py IMAGE ... [--model URI] [--tracking-uri URI] [--test-set]`.

Prints the digit in each image file, `IMAGE.png: 7 (p=0.998)`, predicted by the registry's champion (or the
`--model` given); `--test-set` checks the model's test accuracy against the one its run logged. The images are
prepared like MNIST's own (see `mnist_study/serving/images.py`, which says what it assumes of them).
"""

from __future__ import annotations

import sys

from mnist_study.serving.predict import main

if __name__ == "__main__":
    sys.exit(main())
