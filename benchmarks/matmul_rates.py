"""Which kernels multiply fastest here? float32 and bfloat16 matrix products, TensorFlow's kernels against XLA's.

    .venv/bin/python benchmarks/matmul_rates.py [--reps 5]

For each shape (the 4096^3 square of trial_speed.py's peak, and the tutorial network's products: a batch of 128
or 256 images through a hidden layer of 512 or 1024 units, and the weight gradient's product), a loop of products
worth about 2e10 floating-point operations runs as one TensorFlow call, compiled by XLA or not, and its GFLOP/s
are recorded; the four arms alternate per repetition and medians are printed. TensorFlow's own kernels are
oneDNN's on x86, which use the CPU's bfloat16 instructions (AVX512_BF16, AMX) where it has them; this is what
`train.jit_compile=auto` rests on for bfloat16 (see benchmarks/README.md).

Last line: `bf16_over_f32=<TensorFlow kernels, median over shapes> xla_over_tf=<XLA against TensorFlow's kernels,
float32, median over shapes>`.
"""

from __future__ import annotations

import argparse

import common  # noqa: F401  (first: puts src/ on the path and imports TensorFlow quietly)

# isort: split
import time

import tensorflow as tf
from common import median, print_table

# (rows, inner, columns): the square peak, then a step's forward product and the hidden weights' gradient.
SHAPES = ((4096, 4096, 4096), (128, 784, 512), (256, 784, 1024), (784, 128, 512))
FLOP_PER_CALL = 2e10
ARMS = (("float32", False), ("float32", True), ("bfloat16", False), ("bfloat16", True))


def rate(shape: tuple[int, int, int], dtype: tf.DType, jit: bool, reps: int) -> list[float]:
    """GFLOP/s of `reps` calls, each a loop of products of `shape` in `dtype` worth about FLOP_PER_CALL."""
    rows, inner, columns = shape
    left = tf.cast(tf.random.stateless_uniform((rows, inner), seed=(1, 2)), dtype)
    right = tf.cast(tf.random.stateless_uniform((inner, columns), seed=(3, 4)), dtype)
    products = max(1, int(FLOP_PER_CALL / (2 * rows * inner * columns)))

    @tf.function(jit_compile=jit)
    def loop(left: tf.Tensor, right: tf.Tensor) -> tf.Tensor:
        def body(index: tf.Tensor, total: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            # The index enters the product, so that no compiler hoists it out of the loop.
            shifted = left + tf.cast(index, dtype) * tf.constant(0, dtype)
            return index + 1, total + tf.reduce_sum(tf.cast(tf.matmul(shifted, right), tf.float32))

        return tf.while_loop(lambda index, total: index < products, body, (0, 0.0))[1]

    loop(left, right).numpy()  # Trace, compile and warm up; only the steady state is timed.
    rates = []
    for _ in range(reps):
        started = time.perf_counter()
        loop(left, right).numpy()
        rates.append(2 * rows * inner * columns * products / (time.perf_counter() - started) / 1e9)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5, help="alternating repetitions of every arm (default 5)")
    args = parser.parse_args()
    rows, bf16_ratios, xla_ratios = [], [], []
    for shape in SHAPES:
        rates: dict[tuple[str, bool], list[float]] = {arm: [] for arm in ARMS}
        for _ in range(args.reps):
            for precision, jit in ARMS:
                rates[(precision, jit)] += rate(shape, tf.as_dtype(precision), jit, reps=1)
        medians = {arm: median(values) for arm, values in rates.items()}
        bf16_ratios.append(medians[("bfloat16", False)] / medians[("float32", False)])
        xla_ratios.append(medians[("float32", True)] / medians[("float32", False)])
        rows.append(
            [
                "x".join(str(size) for size in shape),
                *(f"{medians[arm]:.0f}" for arm in ARMS),
                f"{bf16_ratios[-1]:.2f}",
                f"{medians[('bfloat16', True)] / medians[('float32', True)]:.2f}",
            ]
        )
    print(f"\nGFLOP/s, medians of {args.reps} alternating repetitions (rows x inner x columns)")
    print_table(
        ["shape", "f32 TF", "f32 XLA", "bf16 TF", "bf16 XLA", "bf16/f32 TF", "bf16/f32 XLA"],
        rows,
    )
    print(f"bf16_over_f32={median(bf16_ratios):.2f} xla_over_tf={median(xla_ratios):.2f}")


if __name__ == "__main__":
    main()
