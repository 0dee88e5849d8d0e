"""`train.precision`: which CPUs get bfloat16, and the one line that says float32 is used instead.

These tests never import TensorFlow: the CPU's flags come in as a parameter or a file, so the fallback is tested
on any machine.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mnist_study.checks import ConfigError, check_train
from mnist_study.precision import cpu_flags, effective_precision, has_bfloat16

X86_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile
processor\t: 1
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile
"""
ARM_CPUINFO = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


def test_flags_are_read_from_x86_and_arm_cpuinfo(tmp_path: Path) -> None:
    x86, arm = tmp_path / "x86", tmp_path / "arm"
    x86.write_text(X86_CPUINFO)
    arm.write_text(ARM_CPUINFO)
    assert {"avx512f", "avx512_bf16", "amx_tile"} <= cpu_flags(x86)
    assert has_bfloat16(cpu_flags(x86)) and has_bfloat16(cpu_flags(arm))
    assert cpu_flags(tmp_path / "absent") == frozenset()


@pytest.mark.parametrize("flags", [["avx512_bf16"], ["amx_bf16", "amx_tile"], ["bf16"]])
def test_a_cpu_with_bfloat16_trains_in_bfloat16_silently(
    flags: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        assert effective_precision("bfloat16", flags) == "bfloat16"
    assert caplog.records == []


def test_a_cpu_without_bfloat16_says_so_in_one_line_and_uses_float32(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert effective_precision("bfloat16", ["sse2", "avx2", "avx512f"]) == "float32"
    [record] = caplog.records
    message = record.getMessage()
    assert "\n" not in message
    assert "train.precision=bfloat16" in message and "training in float32" in message


def test_float32_never_looks_at_the_cpu(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert effective_precision("float32", []) == "float32"
    assert caplog.records == []


def test_an_unknown_precision_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"train.precision='float16': must be one of float32, bfloat16"):
        effective_precision("float16", ["avx512_bf16"])


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("precision", "float16", "train.precision='float16': must be float32 or bfloat16"),
        ("dropout_masks", "numpy", "train.dropout_masks='numpy': must be keras or hashed"),
    ],
)
def test_the_config_check_names_a_bad_precision_or_mask_source(key: str, value: str, message: str) -> None:
    train = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "train" / "default.yaml")
    train[key] = value
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_train(OmegaConf.create({"train": train}))
