"""Specification of MetaSchedule tuning: a trial budget, a database reused across runs and models,
progress reports, and a tuned library that still matches ONNX Runtime.

Tuning starts MetaSchedule's worker processes (about 15 s each on a 2-core machine): the end-to-end
tests are marked slow; option validation is not.
"""

from __future__ import annotations

import json

import pytest

from backends import compile_model
from backends.tuning import validate_tuning
from ir.errors import UsageError


def tiny_cnn():
    from test_backends import conv_relu_gemm  # noqa: PLC0415

    return conv_relu_gemm()


@pytest.mark.parametrize("trials", [-1, 1.5, True, "8"])
def test_trials_must_be_a_non_negative_integer(trials):
    with pytest.raises(UsageError, match="--tune-trials must be a non-negative integer"):
        validate_tuning(trials, None)


@pytest.mark.parametrize("trials", ["8 per task", "x", "-2x", "2.5x"])
def test_a_per_task_budget_is_a_whole_number_followed_by_x(trials):
    with pytest.raises(UsageError, match="or Nx"):
        validate_tuning(trials, None)


def test_a_per_task_budget_is_kept_apart_from_the_whole_budget():
    request = validate_tuning("8x", None)
    assert (request.trials_per_task, request.trials) == (8, 0)
    assert validate_tuning(8, None).trials_per_task == 0


def test_a_file_is_not_a_tuning_database(tmp_path):
    (tmp_path / "db").write_text("")
    with pytest.raises(UsageError, match="is a file; give a folder"):
        validate_tuning(8, tmp_path / "db")


def test_no_options_means_no_tuning_and_a_database_alone_means_apply_only(tmp_path):
    assert validate_tuning(None, None) is None
    request = validate_tuning(None, tmp_path / "db")
    assert request.trials == 0 and request.database == tmp_path / "db"


def test_a_bad_tuning_option_fails_before_any_work(tmp_path):
    with pytest.raises(UsageError):
        compile_model(tiny_cnn(), "llvm", tmp_path / "out", tune_trials=-3)
    assert not (tmp_path / "out").exists()


@pytest.mark.tvm
@pytest.mark.slow
def test_tuning_fills_the_database_and_a_second_run_reuses_it(tmp_path):
    pytest.importorskip("tvm")
    pytest.importorskip("xgboost")
    progress = []
    first = compile_model(tiny_cnn(), "llvm", tmp_path, tune_trials=8, tune_db=tmp_path / "db", tune_progress=lambda d, t: progress.append((d, t)))
    assert first.check is not None and first.check.passed, first.notes
    assert first.tuning.trials >= 8 and first.tuning.tasks_from_database == 0
    assert 1 <= first.tuning.tasks_tuned <= first.tuning.tasks
    assert progress and progress[-1] == (8, 8) and all(total == 8 for _, total in progress)
    records = (tmp_path / "db" / "database_tuning_record.json").read_text().splitlines()
    assert records and all(json.loads(line) for line in records)

    second = compile_model(tiny_cnn(), "llvm", tmp_path, tune_trials=0, tune_db=tmp_path / "db", name="again")
    assert second.tuning.trials == 0
    assert second.tuning.tasks_from_database >= 1
    assert second.check is not None and second.check.passed


@pytest.mark.tvm
@pytest.mark.slow
def test_a_per_task_budget_gives_every_task_its_trials(tmp_path):
    pytest.importorskip("xgboost")
    result = compile_model(tiny_cnn(), "llvm", tmp_path, tune_trials="2x")
    assert result.tuning.trials >= 2 * result.tuning.tasks
    assert result.tuning.tasks_tuned == result.tuning.tasks
    assert result.check is not None and result.check.passed
