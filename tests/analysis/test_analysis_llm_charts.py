"""The LLM figures as a person reads them: token latencies beside accuracy, cut-short replies apart from failures.

Every figure a chart draws is checked against the level table it was drawn from; the report's LLM section and the
tokens chart exist for an LLM run only, so the page and the charts of any other run stay as they were.
"""

from __future__ import annotations

import struct
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import Level, synth_run, write_run

from loadgrade.analysis import analyse_run, render_html
from loadgrade.analysis.plots import PNG_DPI, plot_errors, plot_throughput, plot_tokens, run_title, write_charts
from loadgrade.analysis.report import RunAnalysis

USERS = [1.0, 2.0, 4.0, 8.0, 16.0]


def _llm_levels() -> pd.DataFrame:
    """A level table of a streamed LLM run: token latencies grow with load, replies are cut short from 4 users."""
    n = np.array([200, 400, 800, 1200, 1600])
    cut = np.array([0, 0, 4, 60, 320])
    failed = cut + np.array([0, 0, 0, 10, 80])
    ok = n - failed
    correct = (ok * np.array([0.9, 0.9, 0.88, 0.8, 0.7])).astype(int)
    effective = correct / n
    return pd.DataFrame(
        {
            "level": range(5), "users": USERS, "load": USERS, "load_unit": "users", "duration_s": 20.0,
            "n": n, "n_ok": ok, "n_scored": ok, "n_correct": correct, "n_wrong": ok - correct, "n_failed": failed,
            "n_timeout": failed - cut, "n_cut_short": cut, "n_cut_short_empty": cut // 2,
            "n_cut_short_length": cut - cut // 2 - cut // 4, "n_cut_short_no_end": cut // 4,
            "n_finish_stop": ok, "n_finish_length": cut - cut // 2 - cut // 4, "n_finish_other": 0,
            "n_finish_none": failed - (cut - cut // 2 - cut // 4),
            "error_rate": failed / n, "error_rate_timeout": (failed - cut) / n, "error_rate_cut_short": cut / n,
            "throughput_rps": n / 20.0, "goodput_rps": correct / 20.0 * 0.95,
            "accuracy": correct / ok, "accuracy_low": correct / ok - 0.03, "accuracy_high": correct / ok + 0.03,
            "effective_accuracy": effective, "effective_accuracy_low": effective - 0.03,
            "effective_accuracy_high": effective + 0.03, "degraded": [False, False, False, True, True],
            "p50_ms": [300.0, 320, 400, 700, 1500], "p95_ms": [400.0, 450, 600, 1200, 3000],
            "p99_ms": [500.0, 520, 800, 1600, 4000],
            "p50_ttft_ms": [40.0, 45, 80, 200, 600], "p90_ttft_ms": [55.0, 60, 110, 300, 1000],
            "p95_ttft_ms": [60.0, 70, 130, 380, 1300], "p99_ttft_ms": [80.0, 90, 160, 500, 2000],
            "p50_tpot_ms": [8.0, 8.5, 10, 14, 25], "p95_tpot_ms": [10.0, 11, 14, 22, 45],
            "p99_tpot_ms": [12.0, 13, 16, 30, 60], "p50_itl_ms": [8.0, 8.4, 9.8, 13, 24],
            "p95_itl_ms": [10.5, 11, 14, 23, 47], "max_itl_ms": [30.0, 35, 60, 150, 900],
            "output_tokens_per_s": [60.0, 115, 210, 330, 400], "token_goodput_tps": [54.0, 100, 180, 240, 210],
            "mean_output_tokens": [24.0, 24, 23, 23, 20], "n_output_tokens": [1200, 2300, 4200, 6600, 8000],
        }
    )  # fmt: skip


def _plain_levels() -> pd.DataFrame:
    """The same run's level table as a non-LLM protocol writes it: no token figure, no reply cut short."""
    levels = _llm_levels()
    llm = [c for c in levels.columns if "ttft" in c or "tpot" in c or "itl" in c or "token" in c]
    llm += [c for c in levels.columns if c.startswith(("n_cut_short_", "n_finish_"))]
    levels = levels.drop(columns=llm)
    levels["n_failed"] = levels["n_timeout"] = levels["n_failed"] - levels["n_cut_short"]
    levels["n_cut_short"] = 0
    levels["error_rate_cut_short"] = 0.0
    levels["error_rate_timeout"] = levels["error_rate"] = levels["n_failed"] / levels["n"]
    return levels


def _curves(ax) -> dict[str, np.ndarray]:
    """The drawn curves of a panel by label, as (x, y) points; the hover targets and reference lines left out."""
    return {
        line.get_label(): line.get_xydata()
        for line in ax.get_lines()
        if not line.get_label().startswith("_") and len(line.get_xdata()) == len(USERS)
    }


def _vertical_lines(ax) -> list[tuple[float, str]]:
    return [
        (float(line.get_xdata()[0]), line.get_color())
        for line in ax.get_lines()
        if len(line.get_xdata()) == 2 and line.get_xdata()[0] == line.get_xdata()[1]
    ]


def test_tokens_chart_draws_ttft_and_tpot_beside_accuracy_from_the_level_table():
    levels = _llm_levels()
    fig = plot_tokens(levels, slo_ttft_ms=500, slo_tpot_ms=30, run_name="llm · run 1")
    accuracy_ax, ttft_ax, tpot_ax, tokens_ax = fig.axes
    assert [ax.get_ylabel() for ax in fig.axes] == [
        "accuracy (%)",
        "time to first token (ms)",
        "time per output token (ms)",
        "tokens per second",
    ]
    assert tokens_ax.get_xlabel() == "offered load (users)"
    assert accuracy_ax.get_title() == "Accuracy and token latencies against load\nllm · run 1"
    for ax, expected in (
        (accuracy_ax, {"all requests": 100 * levels["effective_accuracy"]}),
        (ttft_ax, {"TTFT p50": levels["p50_ttft_ms"], "TTFT p95": levels["p95_ttft_ms"]}),
        (tpot_ax, {"TPOT p50": levels["p50_tpot_ms"], "TPOT p95": levels["p95_tpot_ms"]}),
        (
            tokens_ax,
            {
                "output tokens/s": levels["output_tokens_per_s"],
                "token goodput (right, within the SLOs)": levels["token_goodput_tps"],
            },
        ),
    ):
        curves = _curves(ax)
        assert list(curves) == list(expected)
        for label, values in expected.items():
            assert curves[label][:, 0].tolist() == USERS
            assert curves[label][:, 1] == pytest.approx(values.to_numpy(dtype=float)), label
    # the SLO limits are lines of their own panels
    assert ttft_ax.get_legend_handles_labels()[1][-1] == "SLO 500 ms"
    assert tpot_ax.get_legend_handles_labels()[1][-1] == "SLO 30 ms"
    # where quality breaks crosses every panel; its words sit atop the accuracy panel
    for ax in fig.axes:
        assert (8.0, "tab:red") in _vertical_lines(ax)
        assert (4.0, "tab:green") in _vertical_lines(ax)
    assert {t.get_text() for t in accuracy_ax.texts} == {"breaks at 8 users", "last good: 4 users"}
    marks = {c.get_label(): c.get_offsets() for c in accuracy_ax.collections if c.get_label() == "significantly worse"}
    assert marks["significantly worse"][:, 0].tolist() == [8.0, 16.0]


def test_tokens_chart_of_a_run_without_streaming_keeps_only_the_token_rates():
    levels = _llm_levels().drop(columns=[c for c in _llm_levels().columns if "ttft" in c or "tpot" in c])
    fig = plot_tokens(levels)
    assert [ax.get_ylabel() for ax in fig.axes] == ["accuracy (%)", "tokens per second"]
    fig = plot_tokens(_plain_levels())
    assert [t.get_text() for t in fig.axes[1].texts] == ["no token latencies: no level has a streamed reply"]


def test_tokens_chart_hover_text_gives_the_level_figures():
    from loadgrade.analysis.plots import _svg

    svg = _svg(plot_tokens(_llm_levels())).decode("utf-8")
    tip = svg[svg.index("<title>8 users (level 3)") :].split("</title>")[0]
    assert "TTFT p50 200.0 ms, p95 380.0 ms, p99 500.0 ms" in tip
    assert "TPOT p50 14.0 ms, p95 22.0 ms, p99 30.0 ms" in tip
    assert "output 330.0 tokens/s, token goodput 240.0 tokens/s" in tip
    assert "60 of 1,200 replies cut short (empty 30, length 15, no end 15)" in tip


def test_throughput_stacks_cut_short_between_answered_wrong_and_failed():
    levels = _llm_levels()
    ax = plot_throughput(levels).axes[0]
    parts = {c.get_label(): np.array([p.get_height() for p in c]) for c in ax.containers}
    assert list(parts) == [
        "answered, right",
        "answered, wrong",
        "cut short (no answer in the reply)",
        "failed (error, timeout or shed)",
    ]
    duration = levels["duration_s"].to_numpy()
    assert parts["cut short (no answer in the reply)"] == pytest.approx(levels["n_cut_short"] / duration)
    # the failed part is the failures that are not cut short: no reply is counted twice
    failed = (levels["n_failed"] - levels["n_cut_short"]) / duration
    assert parts["failed (error, timeout or shed)"] == pytest.approx(failed)
    assert sum(parts.values()) == pytest.approx(levels["throughput_rps"].to_numpy())
    cut, wrong = (ax.containers[i] for i in (2, 1))
    for above, below in zip(cut, wrong, strict=True):
        assert above.get_y() == pytest.approx(below.get_y() + below.get_height())
    labels = [t.get_text() for t in ax.texts]
    assert "80/s\n20% cut short\n5% failed" in labels
    assert "40/s\n0.5% cut short" in labels


def test_throughput_of_a_run_without_cut_short_has_no_such_part():
    ax = plot_throughput(_plain_levels()).axes[0]
    assert [c.get_label() for c in ax.containers] == [
        "answered, right",
        "answered, wrong",
        "failed (error, timeout or shed)",
    ]


def test_errors_chart_shows_cut_short_as_a_kind_of_its_own():
    levels = _llm_levels()
    ax = plot_errors(levels).axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["timeout", "cut short"]
    heights = {c.get_label(): [p.get_height() for p in c] for c in ax.containers}
    assert heights["cut short"] == pytest.approx((100 * levels["error_rate_cut_short"]).tolist())
    assert [t.get_text() for t in plot_errors(_plain_levels()).axes[0].get_legend().get_texts()] == ["timeout"]


def _llm_run(run_dir: Path, *, seed: int = 5) -> Path:
    """A streamed LLM run: TTFT and TPOT grow with the users, 70 % of the failures are replies cut short."""
    levels = (Level(1, 200, 0.92), Level(4, 400, 0.9), Level(8, 600, 0.75, 0.15), Level(16, 800, 0.6, 0.35))
    records, truth, stages = synth_run(levels, seed=seed)
    rng = np.random.default_rng(seed)
    users = records["users_active"].to_numpy(dtype=float)
    ok = records["ok"].to_numpy(dtype=bool)
    ttft = 30.0 * (1 + users / 4) + rng.exponential(10, len(records))
    tpot = 8.0 * (1 + users / 8) + rng.exponential(2, len(records))
    tokens = rng.integers(8, 40, len(records)).astype(float)
    records["latency_ms"] = ttft + tpot * (tokens - 1)
    records["ttft_ms"] = np.where(ok, ttft, np.nan)
    records["tpot_ms"] = records["itl_mean_ms"] = np.where(ok, tpot, np.nan)
    records["itl_max_ms"] = np.where(ok, 3 * tpot, np.nan)
    records["output_tokens"] = pd.array(np.where(ok, tokens, np.nan), dtype="Float64").astype("Int64")
    records["finish_reason"] = np.where(ok, "stop", "")
    records["reply"] = np.where(ok, "The answer is " + records["prediction"].astype(str), "")
    failed = np.flatnonzero(~ok)
    cut = failed[: int(len(failed) * 0.7)]
    reasons = rng.choice(["empty", "length", "no_end"], size=len(cut), p=[0.5, 0.3, 0.2])
    records.loc[cut, "error_kind"] = "cut_short"
    records.loc[cut, "status_code"] = 200
    records.loc[cut, "error"] = [f"cut short ({r}): no answer in the reply" for r in reasons]
    records.loc[cut[reasons == "length"], "finish_reason"] = "length"
    rest = failed[len(cut) :]
    records.loc[rest, "error_kind"] = "timeout"
    records.loc[rest, "status_code"] = 0
    records.loc[rest, "error"] = "timed out after 12 tokens"
    return write_run(run_dir, records, truth, stages=stages, slo={"latency_ms": 2000, "ttft_ms": 200, "tpot_ms": 20})


@pytest.fixture(scope="module")
def llm_run(tmp_path_factory) -> RunAnalysis:
    return analyse_run(_llm_run(tmp_path_factory.mktemp("llm") / "llm-run"), progress=False)


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory) -> RunAnalysis:
    records, truth, stages = synth_run((Level(2, 300, 0.95), Level(8, 300, 0.8, 0.1)), seed=2)
    run_dir = write_run(tmp_path_factory.mktemp("plain") / "plain-run", records, truth, stages=stages)
    return analyse_run(run_dir, progress=False)


def test_write_charts_writes_the_tokens_chart_for_an_llm_run_only(llm_run, plain_run, tmp_path):
    paths = write_charts(llm_run, tmp_path / "llm")
    assert "tokens.png" in paths
    assert list(paths).index("tokens.png") == list(paths).index("errors.png") + 1
    png = paths["tokens.png"]
    width, _ = struct.unpack(">II", png.read_bytes()[16:24])
    assert width >= 8 * PNG_DPI * 0.7
    svg = png.with_suffix(".svg").read_text(encoding="utf-8")
    assert f">{run_title(llm_run)}</text>" in svg
    assert ">SLO 200 ms</text>" in svg  # the scenario's slo.ttft_ms
    assert "loadgrade-tip" not in svg
    plain = write_charts(plain_run, tmp_path / "plain")
    assert "tokens.png" not in plain
    assert not (tmp_path / "plain" / "tokens.svg").exists()


class _Tables(HTMLParser):
    """The cells of every table of a page, by id, and the ids of every element."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.ids: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.ids.append(dict(attrs).get("id") or "")
        if tag == "table":
            self._table = dict(attrs).get("id") or f"table{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _page(text: str) -> _Tables:
    page = _Tables()
    page.feed(text)
    page.close()
    return page


def _charts(analysis: RunAnalysis, out: Path) -> dict[str, bytes]:
    charts: dict[str, bytes] = {}
    for name, path in write_charts(analysis, out).items():
        charts[name] = path.read_bytes()
        charts[Path(name).with_suffix(".svg").name] = path.with_suffix(".svg").read_bytes()
    return charts


def test_report_html_has_an_llm_section_matching_the_level_table(llm_run, tmp_path):
    text = render_html(llm_run, charts=_charts(llm_run, tmp_path))
    page = _page(text)
    assert '<h2 id="llm">LLM replies</h2>' in text
    table = page.tables["llm-levels"]
    shown = pd.DataFrame(table[1:], columns=table[0])
    levels = llm_run.levels.sort_values("users")
    assert shown["level"].astype(int).tolist() == levels["level"].tolist()
    for label, column in {
        "TTFT p50 ms": "p50_ttft_ms",
        "TTFT p95 ms": "p95_ttft_ms",
        "TPOT p50 ms": "p50_tpot_ms",
        "TPOT p95 ms": "p95_tpot_ms",
        "ITL p95 ms": "p95_itl_ms",
        "E2E p95 ms": "p95_ms",
        "output tokens/s": "output_tokens_per_s",
        "token goodput/s": "token_goodput_tps",
    }.items():
        assert shown[label].astype(float).to_numpy() == pytest.approx(levels[column].to_numpy(), abs=0.051), label
    top = levels.iloc[-1]
    reasons = " · ".join(f"{r.replace('_', ' ')} {top[f'n_cut_short_{r}']}" for r in ("empty", "length", "no_end"))
    assert shown["cut short: why"].tolist()[-1] == f"{top['n_cut_short']}: {reasons}"
    assert shown["cut short: why"].tolist()[:2] == ["0", "0"]
    assert shown["finish_reason (% of requests)"].tolist()[0] == "stop 100.0"
    # cut-short replies in words, level by level: how many and why
    sentence = (
        f"At 16 users (level {top['level']}), {top['n_cut_short']} of {top['n']} requests "
        f"({100 * top['n_cut_short'] / top['n']:.1f} %) were cut short: {top['n_cut_short_empty']} empty"
    )
    assert sentence in text
    assert f"{top['n_cut_short_no_end']} streamed without an end" in text
    # the tokens chart sits in the LLM section, inlined once, not again among the other charts
    llm = text[text.index('<h2 id="llm">') : text.index('<h2 id="charts">')]
    assert '<figure id="figure-tokens"><svg role="img"' in llm
    assert text.count('id="figure-tokens"') == 1
    assert page.ids.count("chart-tokens") == 1


def test_report_html_of_a_run_without_llm_figures_has_no_llm_section(plain_run, tmp_path):
    text = render_html(plain_run, charts=_charts(plain_run, tmp_path))
    assert 'id="llm"' not in text
    assert "llm-levels" not in _page(text).tables
    assert "figure-tokens" not in text
    assert "LLM replies" not in text
    assert "were cut short" not in text
