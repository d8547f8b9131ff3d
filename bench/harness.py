"""Run one engine on one model in a subprocess, with timeouts and a memory guard.

Each (engine, model) pair gets a fresh process, so import caches, allocator
state and peak memory belong to that pair alone. The process reports each fit
as it ends (see :mod:`bench.worker`); a fit that takes longer than the fit
timeout, or a process whose resident memory passes the limit, is killed and
recorded as such, so a hang never stalls the run.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from bench.models import BenchModel, load_data
from bench.peers import engine

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().parent / "worker.py"

OK, TIMEOUT, MEMORY, FAILED = "ok", "timeout", "memory", "failed"
SKIPPED, UNAVAILABLE, UNSUPPORTED = "skipped", "unavailable", "unsupported"


@dataclass
class Options:
    """How the harness runs each engine.

    Attributes
    ----------
    repeat : int
        Timed fits after the warm-up, at most.
    budget : float
        Seconds of timed fits to aim for: slow fits are timed fewer times.
    fit_timeout : float
        Seconds one fit may take before the process is killed.
    prepare_timeout : float
        Seconds the process may take to build or read the data.
    memory_limit_gb : float
        Resident memory (process tree) at which the process is killed.
    data_dir : Path
        Where the CSV copies that R reads are cached.
    """

    repeat: int = 5
    budget: float = 10.0
    fit_timeout: float = 60.0
    prepare_timeout: float = 900.0
    memory_limit_gb: float = 16.0
    data_dir: Path = ROOT / "bench" / "results" / "data"


@dataclass
class RunResult:
    """What one engine did on one model."""

    engine: str
    model: str
    rows: int
    status: str
    times: list[float] = field(default_factory=list)
    warmup_seconds: float | None = None
    objective: float | None = None
    peak_rss_bytes: int | None = None
    message: str = ""

    @property
    def seconds(self) -> float | None:
        """Median of the timed fits (the warm-up alone if only it finished)."""
        if self.times:
            return statistics.median(self.times)
        return self.warmup_seconds if self.status == OK else None

    def to_dict(self) -> dict:
        """A JSON-ready dict, median included."""
        return {**asdict(self), "seconds": self.seconds}

    @classmethod
    def from_dict(cls, item: dict) -> RunResult:
        """The result :meth:`to_dict` saved."""
        fields = {k: v for k, v in item.items() if k != "seconds"}
        return cls(**fields)


def csv_for(model: BenchModel, data_dir: Path) -> Path:
    """The model's data as a CSV for R, rewritten only when the data change.

    The data are rebuilt (generators are seeded, so this is cheap next to
    writing a CSV) and their hash is compared with the one stored beside the
    CSV, so a changed generator or data set never leaves R a stale copy.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / (model.id.replace(":", "_") + ".csv")
    signature_path = path.with_suffix(".sha256")
    data = load_data(model)
    digest = hashlib.sha256(pd.util.hash_pandas_object(data, index=False).to_numpy().tobytes())
    signature = f"{len(data)} {','.join(data.columns)} {digest.hexdigest()}"
    if path.exists() and signature_path.exists() and signature_path.read_text() == signature:
        return path
    partial = path.with_suffix(".csv.partial")
    data.to_csv(partial, index=False)
    partial.replace(path)  # a killed run never leaves half a file behind
    signature_path.write_text(signature)
    return path


def _command(engine_name: str, model: BenchModel, options: Options) -> list[str]:
    if engine_name == "lme4":
        lme4 = engine("lme4")
        return lme4.command(
            model, csv_for(model, options.data_dir), options.repeat, options.budget, True
        )
    return [
        sys.executable,
        str(WORKER),
        "--engine",
        engine_name,
        "--model",
        model.id,
        "--repeat",
        str(options.repeat),
        "--budget",
        str(options.budget),
    ]


def _tree_rss(pid: int) -> int:
    """Resident bytes of a process and its children (0 once it is gone).

    psutil where installed (the ``bench`` extra); otherwise Linux's ``/proc``,
    so the harness also runs with the ``test`` extra alone.
    """
    try:
        import psutil
    except ImportError:
        return _proc_tree_rss(pid)
    try:
        parent = psutil.Process(pid)
        members = [parent, *parent.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for member in members:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            pass
    return total


def _proc_tree_rss(pid: int) -> int:
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            with open(f"/proc/{current}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            # Children are listed per thread that started them.
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    pending += [int(child) for child in children.read().split()]
        except (OSError, ValueError):
            continue
    return total


def total_memory_bytes() -> int:
    """Physical memory of the machine (for the default memory limit)."""
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except ImportError:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _read_lines(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)  # end of output


def run_engine(engine_name: str, model: BenchModel, options: Options) -> RunResult:
    """Fit ``model`` with ``engine_name`` in a subprocess and collect the timings.

    Parameters
    ----------
    engine_name : str
        One of :data:`bench.peers.ENGINE_NAMES`.
    model : BenchModel
        The model to fit.
    options : Options
        Repeats, timeouts and the memory limit.

    Returns
    -------
    RunResult
        Status ``ok`` with the fit times, or ``timeout``/``memory``/``failed``
        (with whatever the process reported first), or ``unavailable`` /
        ``unsupported`` with the reason, without starting a process.
    """
    result = RunResult(engine_name, model.id, model.rows, OK)
    module = engine(engine_name)
    reason = module.unavailable() or module.unsupported(model)
    if reason:
        result.status = UNAVAILABLE if module.unavailable() else UNSUPPORTED
        result.message = reason
        return result

    with tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen(
            _command(engine_name, model, options),
            stdout=subprocess.PIPE,
            stderr=stderr,
            cwd=ROOT,
            text=True,
            start_new_session=True,  # its own process group: a kill takes R's children too
        )
        lines: queue.Queue = queue.Queue()
        reader = threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True)
        reader.start()
        polled_peak = _supervise(process, lines, result, options)
        reader.join(timeout=5)
        process.stdout.close()
        stderr.seek(0)
        error_text = stderr.read()

    if result.peak_rss_bytes is None or result.status != OK:
        # No report from the process (killed, or no /proc): the largest
        # resident size the harness saw while polling, a lower bound.
        result.peak_rss_bytes = max(result.peak_rss_bytes or 0, polled_peak) or None
    if result.status == OK and not result.times and result.warmup_seconds is None:
        result.status = FAILED
        tail = error_text.strip().splitlines()[-3:]
        result.message = result.message or " ".join(tail)[:500] or "no fit reported"
    return result


def _handle(event: dict, result: RunResult) -> None:
    kind = event.get("event")
    if kind == "fit":
        if event.get("warmup"):
            result.warmup_seconds = float(event["seconds"])
        else:
            result.times.append(float(event["seconds"]))
        objective = event.get("objective")
        result.objective = float(objective) if objective is not None else None
        peak = event.get("peak_rss_bytes")
        if isinstance(peak, (int, float)):
            result.peak_rss_bytes = max(int(peak), result.peak_rss_bytes or 0)
    elif kind == "error":
        result.status = FAILED
        result.message = str(event.get("message", ""))


def _supervise(
    process: subprocess.Popen, lines: queue.Queue, result: RunResult, options: Options
) -> int:
    """Follow the worker's reports until it exits or is killed.

    Returns the largest resident size of the process tree seen while polling.
    """
    deadline = time.monotonic() + options.prepare_timeout
    limit = options.memory_limit_gb * 1e9
    next_memory_check = 0.0
    polled_peak = 0
    preparing = True  # building or reading the data, until the "ready" report
    while True:
        try:
            line = lines.get(timeout=0.05)
        except queue.Empty:
            line = ""
        if line:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                event = {}  # stray output from an engine: not a report
            _handle(event, result)
            if event.get("event") in ("ready", "fit"):
                deadline = time.monotonic() + options.fit_timeout
                preparing = False
        pid, status = os.waitpid(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            _drain(lines, result)
            return polled_peak
        now = time.monotonic()
        if now > deadline:
            _kill(process)
            result.status = TIMEOUT
            result.message = (
                f"building the data took over {options.prepare_timeout:g} s"
                if preparing
                else f"a fit took over {options.fit_timeout:g} s"
            )
            _reap(process)
            return polled_peak
        if now >= next_memory_check:
            next_memory_check = now + 0.2
            resident = _tree_rss(process.pid)
            polled_peak = max(polled_peak, resident)
            if resident > limit:
                _kill(process)
                result.status = MEMORY
                result.message = f"resident memory passed {options.memory_limit_gb:g} GB"
                _reap(process)
                return polled_peak


def _drain(lines: queue.Queue, result: RunResult) -> None:
    # The process has exited; its last lines may still be in the pipe.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.1)
        except queue.Empty:
            continue
        if line is None:
            return
        try:
            _handle(json.loads(line), result)
        except json.JSONDecodeError:
            pass


def _kill(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _reap(process: subprocess.Popen) -> None:
    os.waitpid(process.pid, 0)
    process.returncode = -signal.SIGKILL
