"""The records CSV: one header, rows stamped with the offered load, awkward text survives a round trip."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from loadgrade.recording import RECORD_COLUMNS, WORKER_COLUMNS, LoadTimeline, RecordWriter, worker_row


def row(n: int, t: float, **overrides: object) -> list[object]:
    values = dict(
        request_id=f"0-{n}",
        sample_id=f"s{n}",
        worker_index=0,
        user_id=1,
        t_sent=t,
        latency_ms=1.2345,
        status_code=200,
        ok=True,
        error_kind="",
        error="",
        prediction="3",
        response_bytes=17,
        pass_number=1,
    )
    values.update(overrides)
    return worker_row(**values)  # type: ignore[arg-type]


def test_worker_rows_match_the_worker_columns() -> None:
    assert len(row(1, 1.0)) == len(WORKER_COLUMNS)
    assert RECORD_COLUMNS[: len(WORKER_COLUMNS)] == WORKER_COLUMNS


def test_writer_round_trips_through_pandas(tmp_path: Path) -> None:
    timeline = LoadTimeline()
    timeline.note_users(100.0, 2)
    timeline.start_stage(100.0, target_users=2, spawn_rate=2.0)
    timeline.note_users(110.0, 4)
    timeline.start_stage(110.0, target_users=4, spawn_rate=2.0)
    writer = RecordWriter(tmp_path / "records.csv", timeline)
    nasty = 'HTTP 500: {"error": "a, b"}\nsecond line'
    writer.write_rows(
        [row(1, 100.5), row(2, 111.25, ok=False, error_kind="http", error=nasty, prediction="", status_code=500)]
    )
    writer.write_rows([row(3, 109.999999, prediction='"x,y"')])
    writer.close()
    assert writer.rows_written == 3
    frame = pd.read_csv(tmp_path / "records.csv", keep_default_na=False)
    assert list(frame.columns) == list(RECORD_COLUMNS)
    assert frame["error"].tolist() == ["", nasty, ""]
    assert frame["prediction"].tolist() == ["3", "", '"x,y"']
    assert frame["users_active"].tolist() == [2, 4, 2]
    assert frame["stage"].tolist() == [0, 1, 0]
    assert frame["target_users"].tolist() == [2, 4, 2]
    assert frame["t_sent"].tolist() == [100.5, 111.25, 109.999999]
    assert frame["ok"].tolist() == [True, False, True]


def test_timeline_without_stages_leaves_stage_empty() -> None:
    timeline = LoadTimeline()
    assert timeline.stamp_many([5.0]) == [("", "", "", "")]
    timeline.note_users(1.0, 3)
    assert timeline.stamp_many([5.0]) == [(3, "", "", "")]
