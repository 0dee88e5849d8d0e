"""`train.precision`: float32 arithmetic, or bfloat16 arithmetic (Keras's `mixed_bfloat16`) where the CPU has it.

bfloat16 follows Keras's `mixed_bfloat16` policy: the hidden layer multiplies in bfloat16 and keeps its variables
in float32, and the output layer (softmax) and the loss stay in float32. The policy is given to each layer when
the model is built, never set globally, so nothing of one fit's precision reaches a later fit in the process.

A CPU without bfloat16 instructions would emulate them, slower than float32; there `bfloat16` falls back to
float32 with one warning line. This module never imports TensorFlow.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

FLOAT32 = "float32"
BFLOAT16 = "bfloat16"
PRECISIONS = (FLOAT32, BFLOAT16)
# The CPU flags (x86: /proc/cpuinfo `flags`; Arm: `Features`) that give bfloat16 matrix products in hardware,
# which oneDNN uses for TensorFlow's bfloat16 matmuls.
BFLOAT16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
CPUINFO = Path("/proc/cpuinfo")
# What each precision gives the layers: (hidden layers, output layer). None keeps Keras's default (float32).
LAYER_POLICIES: dict[str, tuple[str | None, str | None]] = {
    FLOAT32: (None, None),
    BFLOAT16: ("mixed_bfloat16", "float32"),
}


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The CPU's feature flags as the kernel lists them (empty where there is no /proc/cpuinfo)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    flags: set[str] = set()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):
            flags.update(value.split())
    return frozenset(flags)


def has_bfloat16(flags: Iterable[str]) -> bool:
    """Whether these CPU flags include a bfloat16 matrix-product instruction set."""
    return not BFLOAT16_FLAGS.isdisjoint(flags)


def effective_precision(requested: str, flags: Iterable[str] | None = None) -> str:
    """The precision a fit uses: `requested`, or float32 (said in one warning line) where the CPU has no
    bfloat16. `flags` are the CPU's feature flags (this machine's when None)."""
    if requested not in PRECISIONS:
        raise ValueError(f"train.precision={requested!r}: must be one of {', '.join(PRECISIONS)}")
    if requested == BFLOAT16 and not has_bfloat16(cpu_flags() if flags is None else flags):
        log.warning(
            "train.precision=bfloat16: this CPU has no bfloat16 instructions (none of %s in %s); "
            "training in float32",
            ", ".join(sorted(BFLOAT16_FLAGS)),
            CPUINFO,
        )
        return FLOAT32
    return requested
