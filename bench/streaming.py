"""How many streamed LLM replies can one loadgrade worker hold, at what CPU per token, and how true are its token
timings? Side by side with LLM benchmark clients from PyPI, in the same run.

``bench/sse_server.py`` streams OpenAI chat chunks at a fixed pace (64 tokens, 100 ms apart by default: a large
model's pace under heavy load) on one core; each client runs on the other (``taskset``), one after the other, with
the same number of concurrent streams:

- **loadgrade**: one Locust process (``locustfiles/replay.py`` standalone), an ``openai-chat`` scenario with
  ``stream: true``, one user per stream;
- **guidellm** (``--peer guidellm=VENV``, ``bench/requirements-peer.txt``): ``guidellm run`` with the
  ``concurrent`` profile;
- **aiperf** (``--peer aiperf=VENV``, ``bench/requirements-peer-aiperf.txt``): ``aiperf profile --concurrency``.

Both peers are run offline with a tiny whitespace tokenizer this script builds locally with their own
``transformers`` (they need one to count prompt tokens; nothing is downloaded); each goes in a virtual environment
of its own. Over the steady middle of each run (the ramp excluded) it reads the server's own ``/stats`` for the
streams open and the tokens sent, and ``/proc`` for the CPU time of the client's whole process tree, so the
headline figure, **output tokens per CPU-second of the load generator**, counts the same tokens the same way for
every client. The server's clock travels in every token (each token's text is its send time), so each reply
carries the true send times of its tokens, and a client's timing error is its own time of a token minus the
server's send time of that token: the first token (TTFT), the last one, and the mean and longest gaps against the
server's gaps. Each client's own record of the replies gives its times: loadgrade's ``records.csv`` (``reply``
with ``reply_chars`` large enough for the whole text), guidellm's JSON report and aiperf's raw export.

    .venv/bin/python bench/streaming.py --peer guidellm=/tmp/guidellm-venv [--peer aiperf=/tmp/aiperf-venv]
        [--streams 1000] [--interval-ms 100] [--seconds 20] [--rounds 1]
    .venv/bin/python bench/streaming.py --streams 200 --seconds 10     # loadgrade alone, shorter
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}

TOKENIZER_SCRIPT = """
import sys
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast
vocab = {"[UNK]": 0, "<s>": 1, "</s>": 2, "[PAD]": 3}
for word in "the a of to and in is it what time please tell answer question".split():
    vocab.setdefault(word, len(vocab))
tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
tokenizer.decoder = decoders.WordPiece(prefix="##")
PreTrainedTokenizerFast(
    tokenizer_object=tokenizer, unk_token="[UNK]", bos_token="<s>", eos_token="</s>", pad_token="[PAD]"
).save_pretrained(sys.argv[1])
"""


def _pinned(cpu: int) -> list[str]:
    """``taskset -c CPU`` when there are two cores to share out and taskset exists, else nothing."""
    usable = (os.cpu_count() or 1) >= 2
    has_taskset = subprocess.run(["sh", "-c", "command -v taskset"], capture_output=True, check=False).returncode == 0
    return ["taskset", "-c", str(cpu)] if usable and has_taskset else []


@dataclass
class ServerOptions:
    tokens: int
    interval_ms: float
    ttft_ms: float
    ttft_jitter_ms: float

    @property
    def stream_s(self) -> float:
        return (self.ttft_ms + self.ttft_jitter_ms + (self.tokens - 1) * self.interval_ms) / 1000


@dataclass
class Load:
    """What every client is asked for: ``streams`` at once, started over ``ramp_s``, measured for ``seconds``."""

    streams: int
    seconds: float
    ramp_s: float


@dataclass
class Server:
    url: str
    pid: int


@contextmanager
def sse_server(options: ServerOptions, python: Path) -> Iterator[Server]:
    """Start bench/sse_server.py on a free port on the second core; stop it by its PID."""
    command = [*_pinned(1), str(python), str(ROOT / "bench" / "sse_server.py"), "--tokens", str(options.tokens)]
    command += ["--interval-ms", str(options.interval_ms), "--ttft-ms", str(options.ttft_ms)]
    command += ["--ttft-jitter-ms", str(options.ttft_jitter_ms)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline() if process.stdout else ""
        if not line.startswith("LISTENING "):
            raise RuntimeError(f"SSE server did not start: {line!r}")
        yield Server(line.split()[1], process.pid)
    finally:
        process.kill()
        process.wait(10)


@contextmanager
def client_process(command: list[str], *, log: Path, **options: Any) -> Iterator[subprocess.Popen]:
    """Run a load generator in a process group of its own, so that it and every process it forks are stopped."""
    with log.open("w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True, **options)
        try:
            yield process
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
            with contextlib.suppress(ProcessLookupError):  # workers left behind by a parent that has ended
                os.killpg(process.pid, signal.SIGKILL)


def server_stats(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/stats", timeout=30) as response:  # slow only when the server is saturated
        return json.loads(response.read())


def _tree_cpu_seconds(pid: int, *, fields_at: tuple[int, ...] = (11, 12, 13, 14)) -> float:
    """User + system CPU time of a process and its live descendants, with the children each has reaped."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = sum(int(fields[i]) for i in fields_at) / CLOCK_TICKS
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += times.get(current, 0.0)
        todo.extend(child for child, parent in parents.items() if parent == current)
    return total


def _quantile(histogram: Sequence[int], q: float, bin_ms: float = 0.25) -> float:
    total = sum(histogram)
    seen = 0
    for index, count in enumerate(histogram):
        seen += count
        if total and seen >= q * total:
            return (index + 1) * bin_ms
    return float("nan")


@dataclass
class Window:
    """The steady middle of one run, as the server and /proc saw it."""

    t0: float
    t1: float
    tokens: int
    cpu_s: float
    open_min: int
    open_max: int
    late_p99_ms: float  # the server's own lateness against its schedule, in the window
    server_cpu_s: float  # CPU time of the server in the window: near 1 per second, the server is the limit
    system_cpu_s: float  # the client's CPU time in the kernel (socket reads, waits), part of cpu_s

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / (self.t1 - self.t0)

    @property
    def tokens_per_cpu_s(self) -> float:
        return self.tokens / self.cpu_s if self.cpu_s > 0 else float("nan")


def measure_window(
    process: subprocess.Popen, server: Server, streams: int, *, settle_s: float, seconds: float
) -> Window:
    """Wait until the client holds its streams, or holds no more for 5 s (it cannot open them all: what it holds
    is measured; loadgrade's pre-flight, one stream at a time, is not a plateau), settle, then measure."""
    deadline = time.monotonic() + 180
    most, most_since = 0, time.monotonic()
    while (open_now := server_stats(server.url)["open_now"]) < streams * 0.98:
        if process.poll() is not None:
            raise RuntimeError("the client ended before it opened its streams")
        if open_now > most:
            most, most_since = open_now, time.monotonic()
        elif (most > streams * 0.05 and time.monotonic() - most_since > 5) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    time.sleep(settle_s)
    start = server_stats(server.url)
    t0, cpu0, server0 = time.time(), _tree_cpu_seconds(process.pid), _tree_cpu_seconds(server.pid)
    system0 = _tree_cpu_seconds(process.pid, fields_at=(12, 14))
    open_now = [start["open_now"]]
    end_at = time.monotonic() + seconds
    while time.monotonic() < end_at:
        time.sleep(min(0.5, max(0.0, end_at - time.monotonic())))
        open_now.append(server_stats(server.url)["open_now"])
    end = server_stats(server.url)
    t1, cpu1, server1 = time.time(), _tree_cpu_seconds(process.pid), _tree_cpu_seconds(server.pid)
    system1 = _tree_cpu_seconds(process.pid, fields_at=(12, 14))
    late = [b - a for a, b in zip(start["late_histogram"], end["late_histogram"], strict=True)]
    tokens = end["chunks"] - start["chunks"]
    return Window(
        t0,
        t1,
        tokens,
        cpu1 - cpu0,
        min(open_now),
        max(open_now),
        _quantile(late, 0.99),
        server1 - server0,
        system1 - system0,
    )


@dataclass
class Timing:
    """One reply's timings on the client's clock beside the server's send times carried in its text."""

    send_lag_ms: float  # server's arrival time - client's send time
    first_ms: float  # client's time of the first token - server's send time of it
    last_ms: float  # client's time of the last token - server's send time of it
    itl_mean_ms: float | None  # client's mean gap - server's mean gap
    itl_max_ms: float | None  # client's longest gap - server's longest gap


def server_times(text: str) -> tuple[float, list[float]]:
    """The server's arrival time and token send times from a reply's text (``@arrival send send ...``)."""
    words = text.strip().split()
    if not words or not words[0].startswith("@"):
        raise ValueError(f"not a reply of bench/sse_server.py: {text[:40]!r}")
    return float(words[0][1:]), [float(word) for word in words[1:]]


def loadgrade_timings(records: Path, t0: float, t1: float, tokens: int) -> list[Timing]:
    """Timings of the whole replies loadgrade recorded, for requests sent within [t0, t1]."""
    timings = []
    with records.open() as file:
        for row in csv.DictReader(file):
            if row["ok"] != "True" or not row["ttft_ms"] or not (t0 <= float(row["t_sent"]) <= t1):
                continue
            arrived, sent = server_times(row["reply"])
            if len(sent) != tokens or int(row["output_tokens"]) != tokens:
                continue  # the reply column was shortened: raise reply_chars
            t_sent = float(row["t_sent"])
            first = t_sent + float(row["ttft_ms"]) / 1000
            itl_mean = float(row["itl_mean_ms"])
            last = first + itl_mean * (tokens - 1) / 1000  # itl_mean is (last - first) / (text chunks - 1)
            gaps = [b - a for a, b in itertools.pairwise(sent)]
            timings.append(
                Timing(
                    send_lag_ms=(arrived - t_sent) * 1000,
                    first_ms=(first - sent[0]) * 1000,
                    last_ms=(last - sent[-1]) * 1000,
                    itl_mean_ms=itl_mean - statistics.fmean(gaps) * 1000,
                    itl_max_ms=float(row["itl_max_ms"]) - max(gaps) * 1000,
                )
            )
    return timings


def guidellm_timings(report: Path, t0: float, t1: float, tokens: int) -> list[Timing]:
    """The same figures from guidellm's JSON report: it keeps each request's output text and its timings."""
    timings = []
    benchmark = json.loads(report.read_text())["benchmarks"][0]
    for request in benchmark["requests"]["successful"]:
        times = request["info"]["timings"]
        if not (t0 <= times["request_start"] <= t1):
            continue
        arrived, sent = server_times(request["output"])
        if len(sent) != tokens:
            continue
        first, last = times["first_token_iteration"], times["last_token_iteration"]
        gaps = [b - a for a, b in itertools.pairwise(sent)]
        timings.append(
            Timing(
                send_lag_ms=(arrived - times["request_start"]) * 1000,
                first_ms=(first - sent[0]) * 1000,
                last_ms=(last - sent[-1]) * 1000,
                itl_mean_ms=((last - first) / (tokens - 1) - statistics.fmean(gaps)) * 1000,
                itl_max_ms=None,  # guidellm keeps no per-token times
            )
        )
    return timings


@dataclass
class Result:
    client: str
    window: Window
    timings: list[Timing] = field(default_factory=list)


def run_loadgrade(server: Server, options: ServerOptions, load: Load, workdir: Path) -> Result:
    """One Locust process: an openai-chat scenario with stream: true, one user per stream."""
    streams, seconds = load.streams, load.seconds
    prompts = workdir / "prompts.csv"
    prompts.write_text("id,label,text\n" + "".join(f"s{i},x,question {i}\n" for i in range(100)))
    settle_s = options.stream_s + 1
    run_time_s = 180 + seconds  # a bound only: the run is stopped (SIGTERM, a clean quit) after the window
    scenario = workdir / f"streaming-{streams}.yaml"
    scenario.write_text(
        f"endpoint: {{base_url: '{server.url}', timeout_s: 60}}\n"
        "protocol: {kind: openai-chat, model: bench-sse, prompt: 'Tell the time ({{sample_id}}): {{text}}',"
        f" stream: true, max_tokens: {options.tokens}, reply_chars: {20 * options.tokens + 40},"
        " answer_regex: '(@\\S+)'}\n"
        f"dataset: {{path: '{prompts}', input_columns: [text]}}\n"
        f"load: {{users: {streams}, spawn_rate: {streams / max(load.ramp_s, 0.1):g}, run_time_s: {run_time_s:.0f}}}\n"
    )
    run_dir = workdir / f"loadgrade-{time.monotonic_ns()}"
    command = [*_pinned(0), sys.executable, "-m", "locust", "-f", str(ROOT / "locustfiles" / "replay.py")]
    command += ["--scenario", str(scenario), "--run-dir", str(run_dir), "--headless", "--only-summary"]
    command += ["--loglevel", "WARNING", "--exit-code-on-error", "0"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with client_process(command, log=workdir / "loadgrade.log", cwd=ROOT, env=env) as process:
        window = measure_window(process, server, streams, settle_s=settle_s, seconds=seconds)
        time.sleep(options.stream_s + 1)  # the replies sent in the window end
        process.terminate()  # Locust quits cleanly on SIGTERM: the records are written
        process.wait(60)
    timings = loadgrade_timings(run_dir / "records.csv", window.t0 - options.stream_s, window.t1, options.tokens)
    return Result("loadgrade", window, timings)


def package_version(venv: Path, package: str) -> str:
    command = [str(venv / "bin" / "python"), "-c", f"import importlib.metadata as m; print(m.version({package!r}))"]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


def _tokenizer(workdir: Path, venv: Path) -> Path:
    """A tiny local tokenizer folder, built with the peer's own transformers: both peers need one, offline."""
    tokenizer = workdir / "tokenizer"
    if not tokenizer.exists():
        subprocess.run([str(venv / "bin" / "python"), "-c", TOKENIZER_SCRIPT, str(tokenizer)], check=True)
    return tokenizer


def run_guidellm(server: Server, options: ServerOptions, load: Load, workdir: Path, venv: Path) -> Result:
    """``guidellm run`` at the same concurrency and ramp, offline, with the local tokenizer; its JSON report kept."""
    streams, seconds = load.streams, load.seconds
    tokenizer = _tokenizer(workdir, venv)
    settle_s = options.stream_s + 1
    # guidellm's clock starts at its first request; the first 20 s are for its ramp (it may never open them all)
    duration_s = 20 + settle_s + seconds + options.stream_s + 5
    report = workdir / f"guidellm-{time.monotonic_ns()}.json"
    command = [*_pinned(0), str(venv / "bin" / "guidellm"), "run"]
    command += ["--backend", f"kind=openai_http,target={server.url},model=bench-sse"]
    command += ["--profile", f"kind=concurrent,streams={streams},rampup_duration={load.ramp_s:g}"]
    command += ["--constraint", f"kind=max_duration,seconds={duration_s:.0f}"]
    command += ["--tokenizer", f"kind=huggingface_auto,model={tokenizer}"]
    command += ["--data", f"kind=synthetic_text,prompt_tokens=16,output_tokens={options.tokens}"]
    command += ["--output", f"kind=json,path={report}", "--disable-console-interactive"]
    env = {**os.environ, **OFFLINE}
    with client_process(command, log=workdir / "guidellm.log", cwd=workdir, env=env) as process:
        window = measure_window(process, server, streams, settle_s=settle_s, seconds=seconds)
        process.wait(duration_s + 180)  # it starts slowly and compiles its report at the end
    timings = guidellm_timings(report, window.t0 - options.stream_s, window.t1, options.tokens)
    return Result("guidellm", window, timings)


def aiperf_timings(raw: Path, t0: float, t1: float, tokens: int) -> list[Timing]:
    """The same figures from aiperf's raw export: each chunk as read, on its monotonic clock from the send."""
    timings = []
    with raw.open() as file:
        for line in file:
            record = json.loads(line)
            meta = record["metadata"]
            if meta.get("benchmark_phase") != "profiling" or record.get("status") != 200:
                continue
            start = meta["request_start_ns"] / 1e9
            if not (t0 <= start <= t1):
                continue
            texts, reads = [], []
            for response in record.get("responses") or []:
                for packet in response.get("packets") or []:
                    if packet.get("name") != "data" or packet["value"] == "[DONE]":
                        continue
                    choices = json.loads(packet["value"]).get("choices") or [{}]
                    text = (choices[0].get("delta") or {}).get("content")
                    if text:
                        texts.append(text)
                        reads.append(start + (response["perf_ns"] - record["start_perf_ns"]) / 1e9)
            arrived, sent = server_times("".join(texts))
            if len(sent) != tokens or len(reads) != tokens:
                continue
            gaps = [b - a for a, b in itertools.pairwise(sent)]
            read_gaps = [b - a for a, b in itertools.pairwise(reads)]
            timings.append(
                Timing(
                    send_lag_ms=(arrived - start) * 1000,
                    first_ms=(reads[0] - sent[0]) * 1000,
                    last_ms=(reads[-1] - sent[-1]) * 1000,
                    itl_mean_ms=(statistics.fmean(read_gaps) - statistics.fmean(gaps)) * 1000,
                    itl_max_ms=(max(read_gaps) - max(gaps)) * 1000,
                )
            )
    return timings


def run_aiperf(server: Server, options: ServerOptions, load: Load, workdir: Path, venv: Path) -> Result:
    """``aiperf profile`` at the same concurrency and ramp, streaming, with the local tokenizer and the server's
    token counts; its raw export (every chunk with the time it was read) kept."""
    streams, seconds = load.streams, load.seconds
    tokenizer = _tokenizer(workdir, venv)
    settle_s = options.stream_s + 1
    duration_s = (
        20 + settle_s + seconds + options.stream_s + 5
    )  # as for guidellm: its clock starts at its first request
    artifacts = workdir / f"aiperf-{time.monotonic_ns()}"
    command = [*_pinned(0), str(venv / "bin" / "aiperf"), "profile", "--model", "bench-sse", "--url", server.url]
    command += ["--endpoint-type", "chat", "--streaming", "--concurrency", str(streams)]
    if load.ramp_s > 0:
        command += ["--concurrency-ramp-duration", f"{load.ramp_s:g}"]
    command += ["--benchmark-duration", f"{duration_s:.0f}", "--tokenizer", str(tokenizer), "--isl", "16"]
    command += ["--osl", str(options.tokens), "--use-server-token-count", "--ui", "none"]
    command += ["--artifact-dir", str(artifacts), "--export-level", "raw"]
    # not HF_HUB_OFFLINE: aiperf's offline path refuses a local tokenizer folder; a folder needs no network anyway
    with client_process(command, log=workdir / "aiperf.log", cwd=workdir) as process:
        window = measure_window(process, server, streams, settle_s=settle_s, seconds=seconds)
        process.wait(duration_s + 180)
    raw = artifacts / "profile_export_raw.jsonl"
    timings = aiperf_timings(raw, window.t0 - options.stream_s, window.t1, options.tokens)
    return Result("aiperf", window, timings)


PEERS = {"guidellm": run_guidellm, "aiperf": run_aiperf}


def _percentiles(values: Sequence[float]) -> str:
    if not values:
        return "      (none)"
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return f"{at(0.5):8.2f} {at(0.99):8.2f} {ordered[-1]:8.2f}"


def report(result: Result, streams: int) -> None:
    w = result.window
    print(f"  {result.client}:")
    print(f"    streams open (server)    {w.open_min}..{w.open_max} of {streams}")
    print(f"    output tokens/s          {w.tokens_per_s:10.0f}")
    print(
        f"    client CPU               {w.cpu_s / (w.t1 - w.t0):10.2f} CPU-s per s"
        f"   ({w.system_cpu_s / w.cpu_s:.0%} in the kernel)"
    )
    print(f"    tokens per CPU-second    {w.tokens_per_cpu_s:10.0f}   ({1e6 / w.tokens_per_cpu_s:.1f} us CPU/token)")
    print(f"    server late, p99         {w.late_p99_ms:10.2f} ms   (its own sends against their schedule)")
    print(
        f"    server CPU               {w.server_cpu_s / (w.t1 - w.t0):10.2f} CPU-s per s   (near 1: the server limits)"
    )
    print(f"    timing error, ms ({len(result.timings)} replies)     p50      p99      max")
    t = result.timings
    print(f"      request send -> arrival {_percentiles([x.send_lag_ms for x in t])}")
    print(f"      first token (TTFT)      {_percentiles([x.first_ms for x in t])}")
    print(f"      last token              {_percentiles([x.last_ms for x in t])}")
    print(f"      mean gap (ITL)          {_percentiles([x.itl_mean_ms for x in t if x.itl_mean_ms is not None])}")
    print(f"      longest gap (ITL max)   {_percentiles([x.itl_max_ms for x in t if x.itl_max_ms is not None])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=1000, help="concurrent streams of each client (default 1000)")
    parser.add_argument("--seconds", type=float, default=20, help="length of the steady window (default 20)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each client; medians shown (default 1)")
    parser.add_argument("--tokens", type=int, default=64, help="tokens per reply (default 64)")
    parser.add_argument("--interval-ms", type=float, default=100, help="server's gap between tokens (default 100)")
    parser.add_argument("--ttft-ms", type=float, default=20, help="server's arrival to first token (default 20)")
    parser.add_argument(
        "--ttft-jitter-ms", type=float, default=0, help="uniform extra TTFT up to this: streams out of step (default 0)"
    )
    parser.add_argument(
        "--peer",
        action="append",
        default=[],
        metavar="NAME=VENV",
        help="a peer and the virtual environment it is installed in: guidellm=DIR or aiperf=DIR (repeatable)",
    )
    parser.add_argument(
        "--ramp-s", type=float, help="start the streams over this long (default: one stream's length; 0: at once)"
    )
    parser.add_argument("--server-python", type=Path, help="Python running the server (default: a peer's: uvloop)")
    parser.add_argument("--keep", type=Path, help="keep the runs' files in this folder")
    args = parser.parse_args()
    peers: dict[str, Path] = {}
    for given in args.peer:
        name, _, venv = given.partition("=")
        if name not in PEERS or not (Path(venv) / "bin" / name).exists():
            parser.error(f"--peer {given!r}: expected guidellm=VENV or aiperf=VENV, VENV/bin/NAME installed")
        peers[name] = Path(venv)
    options = ServerOptions(args.tokens, args.interval_ms, args.ttft_ms, args.ttft_jitter_ms)
    # started over one stream's length, the streams' phases spread evenly, as replies of different lengths do
    load = Load(args.streams, args.seconds, options.stream_s if args.ramp_s is None else args.ramp_s)
    # both peers depend on uvloop, so a peer's environment runs the server on uvloop, the cheaper loop per chunk
    server_python = args.server_python or next((v / "bin" / "python" for v in peers.values()), Path(sys.executable))

    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        results: dict[str, list[Result]] = {"loadgrade": [], **{name: [] for name in peers}}
        for round_number in range(1, args.rounds + 1):
            for client in results:
                with sse_server(options, server_python) as server:  # a fresh server: figures of this run alone
                    if client == "loadgrade":
                        result = run_loadgrade(server, options, load, workdir)
                    else:
                        result = PEERS[client](server, options, load, workdir, peers[client])
                results[client].append(result)
                print(f"round {round_number}, load average {os.getloadavg()[0]:.1f}:", flush=True)
                report(result, args.streams)
    names = ", ".join(f"{name} {package_version(venv, name)}" for name, venv in peers.items()) or "none"
    print(
        f"\n{args.streams} streams of {args.tokens} tokens {args.interval_ms:g} ms apart, steady {args.seconds:g} s, "
        f"{args.rounds} round(s), median; peers: {names}"
    )
    per_cpu = {k: statistics.median(r.window.tokens_per_cpu_s for r in v) for k, v in results.items()}
    per_s = {k: statistics.median(r.window.tokens_per_s for r in v) for k, v in results.items()}
    held = {k: min(r.window.open_min for r in v) for k, v in results.items()}
    for client in results:
        print(
            f"  {client:10s} {per_s[client]:8.0f} tokens/s  {per_cpu[client]:8.0f} tokens/CPU-s  held >= {held[client]}"
        )
    for name in peers:
        print(
            f"  loadgrade / {name}:  {per_cpu['loadgrade'] / per_cpu[name]:6.2f} tokens per CPU-second   (target >= 1)"
        )
        print(f"  {'':{len(name) + 14}s}{per_s['loadgrade'] / per_s[name]:6.2f} tokens/s")
    errors = [t for r in results["loadgrade"] for t in r.timings]
    worst = max(
        _p99([t.first_ms for t in errors]), _p99([t.last_ms for t in errors]), _p99([t.itl_max_ms or 0 for t in errors])
    )
    print(f"  loadgrade's worst p99 timing error: {worst:.2f} ms   (target <= 2)")


def _p99(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else float("nan")


if __name__ == "__main__":
    main()
