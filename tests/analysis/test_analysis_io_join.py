from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import RECORD_COLUMNS, Level, synth_run

from loadgrade.analysis import AnalysisInputError, infer_task, join_truth, load_run, read_records, read_truth


def test_load_run_reads_records_with_contract_types(make_run):
    run = load_run(make_run(), progress=False)
    records = run.records
    assert list(records.columns) == RECORD_COLUMNS
    assert len(records) == 900
    assert records["sample_id"].iloc[0] == "s00000"
    assert records["ok"].dtype == bool
    assert records["worker_index"].dtype == np.int64
    assert str(records["stage"].dtype) == "Int64"
    assert (records.loc[records["ok"], "error_kind"] == "").all()
    assert run.truth.columns.tolist() == ["sample_id", "label"]
    assert run.truth["sample_id"].iloc[0] == "s00000"


def test_records_keep_extra_columns_and_optional_ones(tmp_path):
    records, _, _ = synth_run([Level(2, 20)])
    records = records.drop(columns=["stage", "target_users"]).assign(gpu="a100")
    records.to_csv(tmp_path / "records.csv", index=False)
    frame = read_records(tmp_path / "records.csv", progress=False)
    assert "stage" not in frame.columns
    assert frame["gpu"].iloc[0] == "a100"


def test_records_ids_stay_text(tmp_path):
    records, _, _ = synth_run([Level(2, 3)])
    records["sample_id"] = ["007", "NA", "1e3"]
    records.to_csv(tmp_path / "records.csv", index=False)
    assert read_records(tmp_path / "records.csv").sample_id.tolist() == ["007", "NA", "1e3"]


def test_records_progress_bar_reads_the_same(tmp_path):
    records, _, _ = synth_run([Level(2, 50)])
    records.to_csv(tmp_path / "records.csv", index=False)
    with_bar = read_records(tmp_path / "records.csv", progress=True)
    pd.testing.assert_frame_equal(with_bar, read_records(tmp_path / "records.csv", progress=False))


def test_missing_required_column_is_named(tmp_path):
    records, _, _ = synth_run([Level(2, 5)])
    records.drop(columns=["latency_ms"]).to_csv(tmp_path / "records.csv", index=False)
    with pytest.raises(AnalysisInputError, match=r"has no column 'latency_ms'; columns are: request_id, sample_id"):
        read_records(tmp_path / "records.csv")


def test_empty_run_is_an_error(tmp_path):
    (tmp_path / "records.csv").write_text(",".join(RECORD_COLUMNS) + "\n")
    with pytest.raises(AnalysisInputError, match="has no rows"):
        read_records(tmp_path / "records.csv")


def test_bad_value_names_the_file(tmp_path):
    records, _, _ = synth_run([Level(2, 5)])
    records["latency_ms"] = records["latency_ms"].astype(str)
    records.loc[2, "latency_ms"] = "fast"
    records.to_csv(tmp_path / "records.csv", index=False)
    with pytest.raises(AnalysisInputError, match=r"records file .* cannot be read: .*latency_ms"):
        read_records(tmp_path / "records.csv")


def test_missing_run_dir_and_records():
    with pytest.raises(AnalysisInputError, match="run directory 'nope' does not exist"):
        load_run("nope")


def test_run_dir_without_records(tmp_path):
    with pytest.raises(AnalysisInputError, match=r"has no records\.csv"):
        load_run(tmp_path)


def test_moved_dataset_suggests_truth_option(make_run):
    run_dir = make_run()
    info = json.loads((run_dir / "run.json").read_text())
    info["scenario"]["dataset"]["path"] = "/nowhere/data.csv"
    (run_dir / "run.json").write_text(json.dumps(info))
    with pytest.raises(AnalysisInputError, match=r"does not exist .*--truth FILE"):
        load_run(run_dir)


@pytest.mark.parametrize("suffix", ["csv", "jsonl", "parquet"])
def test_read_truth_formats_give_string_ids(tmp_path, suffix):
    frame = pd.DataFrame({"key": [7, 8, 9], "y": ["a", "b", "c"]})
    path = tmp_path / f"truth.{suffix}"
    if suffix == "csv":
        frame.to_csv(path, index=False)
    elif suffix == "jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path)
    truth = read_truth(path, id_column="key", label_column="y")
    assert truth["sample_id"].tolist() == ["7", "8", "9"]
    assert truth["label"].tolist() == ["a", "b", "c"]


def test_truth_option_overrides_scenario(make_run, tmp_path):
    run_dir = make_run()
    alt = tmp_path / "alt.parquet"
    pd.DataFrame({"id": ["s00000"], "label": [1]}).to_parquet(alt)
    run = load_run(run_dir, truth=alt)
    assert run.truth_path == alt
    assert len(run.truth) == 1


def test_unknown_truth_format(tmp_path):
    path = tmp_path / "truth.xlsx"
    path.write_text("x")
    with pytest.raises(AnalysisInputError, match="format 'xlsx'; expected one of: csv, jsonl, parquet"):
        read_truth(path)


def _records(preds, ok=None, ids=None):
    n = len(preds)
    return pd.DataFrame(
        {
            "sample_id": ids or [f"s{i}" for i in range(n)],
            "ok": ok or [True] * n,
            "prediction": preds,
        }
    )


def test_class_labels_compare_across_types():
    records = _records(["3", '"3"', "3.0", '"cat"', '" cat "', "[0.1, 0.9]", "[2]"])
    truth = pd.DataFrame({"sample_id": [f"s{i}" for i in range(7)], "label": ["3", "3", "3", "cat", "cat", "1", "2"]})
    joined, summary = join_truth(records, truth, task="classification")
    assert joined["correct"].tolist() == [True] * 7
    assert summary.assumptions == ["list predictions were scored as probability vectors: class = argmax index"]


def test_numbers_against_words_is_a_clear_error():
    truth = pd.DataFrame({"sample_id": ["a", "b"], "label": ["cat", "dog"]})
    with pytest.raises(AnalysisInputError, match=r"predictions are numbers \(e.g. '0'\) but labels are text"):
        join_truth(_records(["0", "1"], ids=["a", "b"]), truth)


def test_dict_prediction_cannot_be_a_class():
    truth = pd.DataFrame({"sample_id": ["a"], "label": [1]})
    with pytest.raises(AnalysisInputError, match=r'prediction \{"p": 1\} cannot be compared as a class label'):
        join_truth(_records(['{"p": 1}'], ids=["a"]), truth)


def test_error_rows_are_wrong_and_never_decoded():
    records = _records(["1", "not json {", ""], ok=[True, False, False], ids=["a", "b", "c"])
    truth = pd.DataFrame({"sample_id": ["a", "b", "c"], "label": [1, 1, 1]})
    joined, _ = join_truth(records, truth)
    assert joined["correct"].tolist() == [True, False, False]


def test_duplicate_truth_ids_name_examples():
    truth = pd.DataFrame({"sample_id": ["a", "b", "a", "c", "c"], "label": [1, 1, 1, 2, 2]})
    with pytest.raises(AnalysisInputError, match=r"2 duplicated sample ids \(e.g. 'a', 'c'\)"):
        join_truth(_records(["1"], ids=["a"]), truth)


def test_join_counts_missing_both_ways():
    truth = pd.DataFrame({"sample_id": ["a", "b", "c"], "label": [1, 2, 3]})
    joined, summary = join_truth(_records(["1", "1", "5", "5"], ids=["a", "a", "x", "y"]), truth)
    assert (summary.n_records, summary.n_with_truth, summary.n_without_truth) == (4, 2, 2)
    assert summary.without_truth_examples == ["x", "y"]
    assert summary.n_truth_never_sent == 2
    assert joined["has_truth"].tolist() == [True, True, False, False]


def test_no_overlap_is_an_error():
    truth = pd.DataFrame({"sample_id": ["a"], "label": [1]})
    with pytest.raises(AnalysisInputError, match="no record's sample_id is in the ground truth"):
        join_truth(_records(["1"], ids=["zz"]), truth)


def test_regression_and_text_tasks():
    truth = pd.DataFrame({"sample_id": ["a", "b"], "label": ["1.5", 2]})
    joined, _ = join_truth(_records(["1.25", "[2.0]"], ids=["a", "b"]), truth, task="regression")
    assert joined["y_pred"].tolist() == [1.25, 2.0]
    assert joined["y_true"].tolist() == [1.5, 2.0]
    with pytest.raises(AnalysisInputError, match="prediction 'x' is not a number"):
        join_truth(_records(['"x"'], ids=["a"]), truth, task="regression")
    truth = pd.DataFrame({"sample_id": ["a", "b"], "label": ["The cat sat.", "a dog"]})
    joined, summary = join_truth(_records(['"the cat  sat"', '"a dog"'], ids=["a", "b"]), truth)
    assert summary.task == "text"
    assert joined["correct"].tolist() == [False, True]
    assert joined["correct_normalised"].tolist() == [True, True]


def test_bad_task_name():
    truth = pd.DataFrame({"sample_id": ["a"], "label": [1]})
    with pytest.raises(AnalysisInputError, match="task must be one of classification, regression, text"):
        join_truth(_records(["1"], ids=["a"]), truth, task="ranking")


def test_infer_task_float_labels_few_values_are_classes():
    assert infer_task(pd.Series([0.5, 1.0, 1.5] * 10)) == "classification"
    assert infer_task(pd.Series(np.random.default_rng(0).normal(size=100))) == "regression"


def test_truth_file_relative_path(tmp_path: Path):
    (tmp_path / "t.csv").write_text("id,label\n1,2\n")
    assert read_truth(tmp_path / "t.csv")["label"].tolist() == [2]


def test_open_model_columns_are_floats_and_may_be_empty(tmp_path):
    records, _, _ = synth_run([Level(2, 4)])
    records["t_scheduled"] = ["1795000000.25", "", "1795000001", ""]
    records["target_rps"] = ["50", "", "50.5", ""]
    records.to_csv(tmp_path / "records.csv", index=False)
    frame = read_records(tmp_path / "records.csv", progress=False)
    assert frame["t_scheduled"].dtype == np.float64
    assert frame["target_rps"].dtype == np.float64
    assert frame["t_scheduled"].isna().tolist() == [False, True, False, True]
    assert frame["target_rps"].iloc[2] == 50.5
    # a closed-model run: the columns exist and are empty throughout, still floats
    records["t_scheduled"] = ""
    records["target_rps"] = ""
    records.to_csv(tmp_path / "records.csv", index=False)
    frame = read_records(tmp_path / "records.csv", progress=False)
    assert frame["t_scheduled"].dtype == np.float64
    assert frame["target_rps"].isna().all()


def test_open_model_column_with_text_is_named(tmp_path):
    records, _, _ = synth_run([Level(2, 2)])
    records["t_scheduled"] = ["soon", "1795000000.5"]
    records.to_csv(tmp_path / "records.csv", index=False)
    with pytest.raises(AnalysisInputError, match="column 't_scheduled'"):
        read_records(tmp_path / "records.csv", progress=False)
