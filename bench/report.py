"""Tables (terminal and Markdown) and the scaling plot from the harness's results."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bench.harness import MEMORY, OK, SKIPPED, TIMEOUT, UNAVAILABLE, UNSUPPORTED, RunResult
from bench.models import BenchModel, human_rows

BASELINE = "mixedmodels"
# Criteria (REML criterion or deviance) further apart than this mean the two
# engines did not reach the same optimum, or did not fit the same model.
OBJECTIVE_TOLERANCE = 0.01


def format_seconds(seconds: float) -> str:
    """``0.45 ms``, ``12.3 ms``, ``1.23 s``, ``42.1 s``."""
    if seconds < 0.001:
        return f"{seconds * 1e3:.2f} ms"
    if seconds < 1.0:
        return f"{seconds * 1e3:.3g} ms"
    if seconds < 100:
        return f"{seconds:.3g} s"
    return f"{seconds:.0f} s"


def format_ratio(ratio: float) -> str:
    """``0.0087×``, ``4.3×``, ``120×``: two significant digits, no exponent."""
    if ratio >= 100:
        return f"{ratio:.0f}×"
    return f"{ratio:.2g}×"


def format_bytes(count: int | None) -> str:
    """Peak memory as ``312 MB`` or ``5.2 GB``."""
    if count is None:
        return "—"
    if count < 1e9:
        return f"{count / 1e6:.0f} MB"
    return f"{count / 1e9:.1f} GB"


def status_text(result: RunResult, fit_timeout: float) -> str:
    """What a cell says when there is no time."""
    return {
        TIMEOUT: f"> {fit_timeout:g} s",
        MEMORY: "out of memory",
        UNSUPPORTED: "n/a",
        UNAVAILABLE: "not installed",
        SKIPPED: "skipped",
    }.get(result.status, "failed")


def time_cell(result: RunResult, baseline: RunResult | None, fit_timeout: float) -> str:
    """A peer's time with its ratio to mixedmodels' (``2.1 s (4.0×)``)."""
    if result.seconds is None:
        return status_text(result, fit_timeout)
    text = format_seconds(result.seconds)
    if result.engine != BASELINE and baseline is not None and baseline.seconds:
        text += f" ({format_ratio(result.seconds / baseline.seconds)})"
    if _objective_differs(result, baseline):
        text += " †"
    return text


def _objective_differs(result: RunResult, baseline: RunResult | None) -> bool:
    if baseline is None or result.engine == BASELINE:
        return False
    if result.objective is None or baseline.objective is None:
        return False
    return abs(result.objective - baseline.objective) > OBJECTIVE_TOLERANCE


def target_cell(
    model: BenchModel, baseline: RunResult | None, fit_timeout: float = 60.0
) -> tuple[str, str]:
    """The issue's target and whether mixedmodels met it (or by how much it missed)."""
    if model.target is None:
        return "—", "—"
    target = model.target
    if baseline is not None and baseline.status == TIMEOUT:
        ratio = fit_timeout / target.seconds
        bound = f" (> {format_ratio(ratio)} the target)" if ratio > 1.5 else ""
        return target.text, f"missed: over {fit_timeout:g} s{bound}"
    if baseline is not None and baseline.status == MEMORY:
        return target.text, "missed: out of memory"
    if baseline is None or baseline.seconds is None:
        return target.text, "not measured"
    misses = []
    if baseline.seconds > target.seconds:
        over = baseline.seconds - target.seconds
        misses.append(
            f"time by {format_seconds(over)} "
            f"({format_ratio(baseline.seconds / target.seconds)} the target)"
        )
    if target.peak_gb is not None and baseline.peak_rss_bytes is not None:
        if baseline.peak_rss_bytes > target.peak_gb * 1e9:
            misses.append(
                f"memory by {format_bytes(baseline.peak_rss_bytes - target.peak_gb * 1e9)}"
            )
    return target.text, "met" if not misses else "missed: " + "; ".join(misses)


def memory_cell(result: RunResult | None) -> str:
    """Peak memory; ``≥`` for a process killed before it finished (a polled lower bound)."""
    if result is None or result.status in (UNAVAILABLE, UNSUPPORTED, SKIPPED):
        return "—"
    text = format_bytes(result.peak_rss_bytes)
    if result.status in (TIMEOUT, MEMORY) and result.peak_rss_bytes is not None:
        text = "≥ " + text
    return text


def _index(results: Sequence[RunResult]) -> dict[tuple[str, str], RunResult]:
    return {(r.model, r.engine): r for r in results}


def model_tables(
    models: Sequence[BenchModel],
    engines: Sequence[str],
    results: Sequence[RunResult],
    fit_timeout: float,
) -> tuple[list[list[str]], list[list[str]]]:
    """Rows of the time table (with targets) and of the peak-memory table."""
    found = _index(results)
    times = [["model", "rows", *engines, "target", "mixedmodels vs target"]]
    memory = [["model", "rows", *engines]]
    for model in models:
        baseline = found.get((model.id, BASELINE))
        row = [model.id, human_rows(model.rows)]
        mem_row = [model.id, human_rows(model.rows)]
        for name in engines:
            result = found.get((model.id, name))
            row.append(time_cell(result, baseline, fit_timeout) if result else "—")
            mem_row.append(memory_cell(result))
        row.extend(target_cell(model, baseline, fit_timeout))
        times.append(row)
        memory.append(mem_row)
    return times, memory


def sweep_table(
    sizes: Sequence[int], engines: Sequence[str], results: Sequence[RunResult], fit_timeout: float
) -> list[list[str]]:
    """Rows of the scaling sweep's table: one row per size, a column per engine."""
    found = _index(results)
    rows = [["rows", *engines]]
    for size in sizes:
        model_id = f"sweep:{size}"
        baseline = found.get((model_id, BASELINE))
        row = [human_rows(size)]
        for name in engines:
            result = found.get((model_id, name))
            row.append(time_cell(result, baseline, fit_timeout) if result else "—")
        rows.append(row)
    return rows


def markdown(rows: list[list[str]]) -> str:
    """A Markdown table; the first row is the header."""
    header, *body = rows
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def plain(rows: list[list[str]]) -> str:
    """A fixed-width table for the terminal."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def plot_sweep(
    sizes: Sequence[int],
    engines: Sequence[str],
    results: Sequence[RunResult],
    path: Path,
    fit_timeout: float,
) -> Path | None:
    """Log-log plot of fit time against rows, a line per engine; None without matplotlib.

    A fit that timed out is drawn as a hollow marker at the timeout, the last
    point of its line.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    found = _index(results)
    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=120)
    for name in engines:
        xs, ys, cut = [], [], None
        for size in sizes:
            result = found.get((f"sweep:{size}", name))
            if result is None:
                continue
            if result.status == OK and result.seconds is not None:
                xs.append(size)
                ys.append(result.seconds)
            elif result.status in (TIMEOUT, MEMORY) and cut is None:
                cut = size
        if not xs and cut is None:
            continue
        (line,) = axes.plot(xs, ys, marker="o", label=name)
        if cut is not None:
            label = (
                f"> {fit_timeout:g} s"
                if found[(f"sweep:{cut}", name)].status == TIMEOUT
                else ("out of memory")
            )
            axes.plot(
                [cut],
                [fit_timeout],
                marker="o",
                markerfacecolor="none",
                color=line.get_color(),
                linestyle="none",
            )
            axes.annotate(
                label,
                (cut, fit_timeout),
                textcoords="offset points",
                xytext=(-4, -12),
                ha="right",
                fontsize=7,
                color=line.get_color(),
            )
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("rows")
    axes.set_ylabel("fit time (s), median")
    axes.set_title("y ~ x + (x | g), 20 rows per group")
    axes.grid(True, which="major", alpha=0.3)
    if axes.lines:
        axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
