"""Specification of the target listing behind ``python -m passes targets``."""

from __future__ import annotations

from backends import PRESETS, list_targets, parse_target
from backends.targets_table import format_targets


def test_every_preset_is_listed_with_its_tvm_dict_and_builder():
    rows = list_targets()
    assert [row.name for row in rows] == list(PRESETS)
    for row in rows:
        assert row.tvm == parse_target(row.name).to_tvm_dict()
        assert row.text == parse_target(row.name).text
        assert row.builder and "not supported" not in row.builder


def test_arm_rows_say_what_is_missing_when_they_cannot_build_or_check():
    for row in list_targets():
        if row.name in ("rpi4", "arm-a72", "arm-a55"):
            assert row.builder.startswith("aarch64 Linux")
            assert row.checks_here or row.reason
            if not row.builds_here:
                assert "aarch64-linux-gnu-g++" in row.reason


def test_cuda_rows_are_checked_only_with_a_gpu():
    cuda = [row for row in list_targets() if row.tvm["kind"] == "cuda"]
    assert {row.name for row in cuda} == {"cuda-sm80", "cuda-sm90"}
    assert all(row.checks_here or "CUDA GPU" in row.reason for row in cuda)


def test_the_table_has_one_line_per_target_plus_reasons():
    text = format_targets(list_targets())
    assert text.splitlines()[0].split() == ["name", "build", "check", "target"]
    assert "rpi4" in text and "llvm -mtriple=aarch64-linux-gnu -mcpu=cortex-a72 -mattr=+neon" in text
