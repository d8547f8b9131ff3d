"""Benchmark mixedmodels against lme4, glmm, mixedlm and statsmodels in one run.

Run from anywhere (the repository root shown):

    python bench/run.py             # the issue's models, the extras, the sweep 10^3 … 10^7
    python bench/run.py --quick     # small models and a sweep to 10^5: a few minutes
    python bench/run.py --publish   # also write RESULTS.md, the plot and the README's table
    python bench/run.py --render bench/results/results.json   # tables again, no fits

Every engine fits every model in its own subprocess: a warm-up fit, then the
median of up to ``--repeat`` fits (fewer when a fit is slow, see ``--budget``),
each timed from formula and data frame to fitted model. A fit that passes
``--timeout`` seconds or a process whose memory passes ``--memory-limit`` is
killed and shown as such; in the sweep an engine that times out is not tried
on larger sizes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: make the repository root importable for ``bench``.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import report
from bench.harness import (
    FAILED,
    MEMORY,
    OK,
    SKIPPED,
    TIMEOUT,
    UNAVAILABLE,
    UNSUPPORTED,
    Options,
    RunResult,
    run_engine,
    total_memory_bytes,
)
from bench.models import MODELS, QUICK_MODELS, BenchModel, get_model, sweep_sizes
from bench.peers import ENGINE_NAMES, engine

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED_TABLE = ROOT / "bench" / "RESULTS.md"
PUBLISHED_PLOT = ROOT / "docs" / "images" / "scaling.png"
README = ROOT / "README.md"
# The README shows the fit-time table between these lines (rewritten by --publish).
README_TABLE_START = "<!-- bench: fit-time table, written by bench/run.py --publish -->"
README_TABLE_END = "<!-- bench: end of table -->"
RATIO_TEXT = "in brackets: the engine's time over mixedmodels'; above 1, mixedmodels is faster"
SWEEP_TITLE = "y ~ x + (x | g), 20 rows per level of g"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="small models, sweep to 10^5, 3 repeats, 20 s timeout"
    )
    parser.add_argument(
        "--models",
        help="comma-separated model ids, or 'issue', 'extra', 'glmm', 'none' "
        "(default: issue,extra; with --quick: " + ",".join(QUICK_MODELS) + ")",
    )
    parser.add_argument(
        "--engines", help=f"comma-separated engines (default: all of {','.join(ENGINE_NAMES)})"
    )
    parser.add_argument("--no-sweep", dest="sweep", action="store_false", help="skip the sweep")
    parser.add_argument(
        "--sweep-range",
        default=None,
        help="log10 of the sweep's smallest and largest rows, e.g. 3,7 (default 3,7; quick 3,5)",
    )
    parser.add_argument("--repeat", type=int, help="timed fits after the warm-up (default 5)")
    parser.add_argument(
        "--budget", type=float, help="seconds of timed fits per model and engine (default 10)"
    )
    parser.add_argument(
        "--timeout", type=float, help="seconds one fit may take (default 60; quick 20)"
    )
    parser.add_argument(
        "--memory-limit",
        type=float,
        help="GB of resident memory per process (default: half the RAM)",
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results", help="where results go"
    )
    parser.add_argument(
        "--publish",
        action="store_true",
        help=f"also write {PUBLISHED_TABLE.relative_to(ROOT)}, "
        f"{PUBLISHED_PLOT.relative_to(ROOT)} and the README's fit-time table",
    )
    parser.add_argument("--list", action="store_true", help="list the models and exit")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="RESULTS_JSON",
        help="run nothing: print and write the tables and plot of a saved results.json",
    )
    return parser.parse_args(argv)


def _pick_models(spec: str | None, quick: bool) -> list[BenchModel]:
    if spec is None:
        spec = ",".join(QUICK_MODELS) if quick else "issue,extra"
    chosen: list[BenchModel] = []
    for name in filter(None, (part.strip() for part in spec.split(","))):
        if name == "none":
            continue
        if name in ("issue", "extra", "glmm"):
            chosen += [m for m in MODELS.values() if m.kind == name]
        else:
            try:
                chosen.append(get_model(name))
            except (KeyError, ValueError):
                raise SystemExit(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None
    return list({m.id: m for m in chosen}.values())


def _pick_engines(spec: str | None) -> list[str]:
    if spec is None:
        return list(ENGINE_NAMES)
    names = [part.strip() for part in spec.split(",") if part.strip()]
    unknown = [n for n in names if n not in ENGINE_NAMES]
    if unknown:
        raise SystemExit(
            f"unknown engine(s) {', '.join(unknown)}; known: {', '.join(ENGINE_NAMES)}"
        )
    # Table order; the baseline of every ratio is always run, and first.
    return [n for n in ENGINE_NAMES if n in names or n == "mixedmodels"]


def _options(args: argparse.Namespace) -> Options:
    default_limit = 0.5 * total_memory_bytes() / 1e9
    return Options(
        repeat=args.repeat or (3 if args.quick else 5),
        budget=args.budget or (3.0 if args.quick else 10.0),
        fit_timeout=args.timeout or (20.0 if args.quick else 60.0),
        memory_limit_gb=args.memory_limit or default_limit,
        data_dir=args.out / "data",
    )


def _progress(result: RunResult, timeout: float) -> None:
    if result.seconds is not None:
        what = report.format_seconds(result.seconds)
        what += f"  (n={len(result.times) or 1}, peak {report.format_bytes(result.peak_rss_bytes)})"
    else:
        what = report.status_text(result, timeout)
        if result.message:
            what += f": {result.message}"
    print(f"  {result.engine:12} {result.model:20} {what}", file=sys.stderr, flush=True)


def _versions(engines: list[str]) -> dict[str, str | None]:
    packages = {"mixedmodels": "mixedmodels", "glmm": "glmm", "mixedlm": "mixedlm"}
    packages["statsmodels"] = "statsmodels"
    found: dict[str, str | None] = {}
    for name in engines:
        if name == "lme4":
            found[name] = engine("lme4").version() if not engine("lme4").unavailable() else None
            continue
        try:
            found[name] = metadata.version(packages[name])
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


class Recorder:
    """Collects the results and rewrites ``results.json`` after each one.

    A run interrupted after an hour keeps what it measured, and
    ``--render`` can draw the tables from it.
    """

    def __init__(self, path: Path, payload: dict) -> None:
        self.path = path
        self.payload = {**payload, "results": []}
        path.parent.mkdir(parents=True, exist_ok=True)

    def add(self, result: RunResult, timeout: float) -> None:
        """Record one result, print a progress line, save."""
        if result.status != SKIPPED:
            _progress(result, timeout)
        self.payload["results"].append(result.to_dict())
        self.save()

    def save(self) -> None:
        """Write the payload (atomically: never half a file)."""
        partial = self.path.with_suffix(".json.partial")
        partial.write_text(json.dumps(self.payload, indent=1))
        partial.replace(self.path)


def run_models(
    models: list[BenchModel], engines: list[str], options: Options, recorder: Recorder
) -> None:
    """Every engine on every model, in table order."""
    for model in models:
        for name in engines:
            recorder.add(run_engine(name, model, options), options.fit_timeout)


def run_sweep(sizes: list[int], engines: list[str], options: Options, recorder: Recorder) -> None:
    """The scaling sweep; an engine that times out or fails skips the larger sizes."""
    for name in engines:
        stopped_at: RunResult | None = None
        for size in sizes:
            model = get_model(f"sweep:{size}")
            if stopped_at is not None:
                result = RunResult(name, model.id, size, SKIPPED)
                result.message = f"{stopped_at.status} at {stopped_at.rows} rows"
                recorder.add(result, options.fit_timeout)
                continue
            result = run_engine(name, model, options)
            recorder.add(result, options.fit_timeout)
            if result.status in (TIMEOUT, MEMORY, FAILED):
                stopped_at = result
            elif result.status == UNAVAILABLE:
                break


def _notes(payload: dict, results: list[RunResult]) -> list[str]:
    options = payload["options"]
    notes = []
    for name in payload["engines"]:
        reason = next(
            (r.message for r in results if r.engine == name and r.status == UNAVAILABLE), None
        )
        if reason:
            notes.append(f"{name} not run: {reason}.")
    unsupported = {
        r.message for r in results if r.engine == "statsmodels" and r.status == UNSUPPORTED
    }
    if any("MixedLM" in message for message in unsupported):
        notes.append(
            "statsmodels n/a: MixedLM takes one grouping factor with independent variance "
            "components nested in it; crossed factors and correlated slopes at a nested "
            "level cannot be written."
        )
    if any("GLMM" in message for message in unsupported):
        notes.append(
            "statsmodels n/a for GLMMs: it has no frequentist GLMM, only the Bayesian "
            "approximations of BinomialBayesMixedGLM and PoissonBayesMixedGLM."
        )
    for r in results:
        if r.status == FAILED:
            notes.append(f"{r.engine} failed on {r.model}: {r.message}")
    notes.append(
        "† the engine's REML criterion / deviance differs from mixedmodels' by more than "
        f"{report.OBJECTIVE_TOLERANCE} (a different optimum)."
    )
    cores = payload["cores"] or 1
    load_start, load_end = payload["load_average_start"][0], payload["load_average_end"][0]
    # Only the load before the first fit tells of other work: at the end the
    # bench's own processes are in the average.
    if load_start > 0.5 * cores:
        notes.append(
            f"The machine was busy: load average {load_start:.1f} at the start "
            f"({load_end:.1f} at the end) on {cores} cores. Other processes shared the "
            "cores, so times are inflated and noisy."
        )
    timeout = options["fit_timeout"]
    notes.append(
        f"Times: median of up to {options['repeat']} fits after a warm-up, fewer when a fit "
        f"is slow (about {options['budget']:g} s of timed fits). > {timeout:g} s: killed "
        f"after {timeout:g} s. Peak memory: the fitting process's peak resident set, "
        "interpreter and data included."
    )
    return notes


def _complete(payload: dict) -> dict:
    """Fill what an older or interrupted ``results.json`` lacks, from its results."""
    items = payload["results"]
    done = dict(payload)
    seen_engines = {item["engine"] for item in items}
    done.setdefault("engines", [n for n in ENGINE_NAMES if n in seen_engines])
    fixed = [item["model"] for item in items if not item["model"].startswith("sweep:")]
    done.setdefault("models", list(dict.fromkeys(fixed)))
    sizes = {item["rows"] for item in items if item["model"].startswith("sweep:")}
    done.setdefault("sweep_sizes", sorted(sizes))
    done.setdefault("cores", os.cpu_count())
    done.setdefault("load_average_start", (0.0, 0.0, 0.0))
    done.setdefault("load_average_end", done["load_average_start"])
    done.setdefault("command", "python bench/run.py")
    done.setdefault("versions", {})
    # Early files saved every option as text.
    options = dict(done.get("options", {}))
    for key, default in (("repeat", 5), ("budget", 10.0), ("fit_timeout", 60.0)):
        options[key] = float(options.get(key, default))
    options["repeat"] = int(options["repeat"])
    done["options"] = options
    return done


def render(payload: dict, out: Path, publish: bool) -> None:
    """Print the tables and write ``RESULTS.md`` and ``scaling.png`` from a payload.

    Parameters
    ----------
    payload : dict
        What :class:`Recorder` saved: run metadata and every result.
    out : Path
        Directory for ``RESULTS.md`` and ``scaling.png``.
    publish : bool
        Also copy them to ``bench/RESULTS.md`` and ``docs/images/scaling.png``.
    """
    payload = _complete(payload)
    results = [RunResult.from_dict(item) for item in payload["results"]]
    engines = payload["engines"]
    timeout = payload["options"]["fit_timeout"]
    models = [get_model(m) for m in payload["models"]]
    sizes = payload["sweep_sizes"]
    fixed = [r for r in results if not r.model.startswith("sweep:")]
    sweep = [r for r in results if r.model.startswith("sweep:")]
    time_rows, memory_rows = report.model_tables(models, engines, fixed, timeout)
    sweep_rows = report.sweep_table(sizes, engines, sweep, timeout)
    notes = _notes(payload, results)

    out.mkdir(parents=True, exist_ok=True)
    plot_path = None
    if sizes:
        plot_path = report.plot_sweep(sizes, engines, sweep, out / "scaling.png", timeout)
    if models:
        print(f"\nFit time ({RATIO_TEXT})\n" + report.plain(time_rows))
        print("\nPeak resident memory of the fitting process\n" + report.plain(memory_rows))
    if sizes:
        print(f"\nScaling sweep: {SWEEP_TITLE}\n" + report.plain(sweep_rows))
    print("\n" + "\n".join(notes))

    versions = ", ".join(f"{k} {v}" for k, v in payload["versions"].items() if v)
    lines = [
        "# Benchmark results",
        "",
        f"`{payload['command']}`, {payload['started'][:16].replace('T', ' ')} UTC, "
        f"{payload['machine']}; {versions}.",
        "",
    ]
    if models:
        lines += [
            "## Fit time",
            "",
            f"Median fit time, formula and data frame to fitted model ({RATIO_TEXT}).",
            "",
            report.markdown(time_rows),
            "",
            "## Peak memory",
            "",
            report.markdown(memory_rows),
            "",
        ]
    if sizes:
        lines += [
            "## Scaling sweep",
            "",
            f"{SWEEP_TITLE}: median fit time against rows.",
            "",
            "![fit time against rows, a line per engine](../docs/images/scaling.png)",
            "",
            report.markdown(sweep_rows),
            "",
        ]
    lines += ["## Notes", "", *(f"- {note}" for note in notes), ""]
    table_text = "\n".join(lines)
    (out / "RESULTS.md").write_text(table_text)
    written = [out / "RESULTS.md"]
    if publish:
        PUBLISHED_TABLE.write_text(table_text)
        written.append(PUBLISHED_TABLE)
        if models and _update_readme(payload, report.markdown(time_rows)):
            written.append(README)
        if plot_path is not None:
            PUBLISHED_PLOT.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(plot_path, PUBLISHED_PLOT)
            written.append(PUBLISHED_PLOT)
    elif plot_path is not None:
        written.append(plot_path)
    print("\nwrote " + ", ".join(str(p) for p in written), file=sys.stderr)


def _update_readme(payload: dict, table: str) -> bool:
    """Put the fit-time table between the README's markers; False if they are missing."""
    text = README.read_text()
    start, end = text.find(README_TABLE_START), text.find(README_TABLE_END)
    if start < 0 or end < start:
        return False
    when = payload["started"][:16].replace("T", " ")
    block = (
        f"{README_TABLE_START}\n"
        f"Median fit time, formula and data frame to fitted model, `{payload['command']}` "
        f"on {when} UTC ({payload['machine']}); in brackets each engine's time over "
        "mixedmodels' (above 1, mixedmodels is faster). Memory, the scaling sweep and "
        "notes: [bench/RESULTS.md](bench/RESULTS.md).\n\n"
        f"{table}\n"
    )
    README.write_text(text[:start] + block + text[end:])
    return True


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the tables; write results (and publish them if asked)."""
    args = _parse_args(argv)
    if args.list:
        for model in MODELS.values():
            print(f"{model.id:20} {model.kind:6} {model.rows:>10}  {model.formula}")
        return 0
    if args.render is not None:
        payload = json.loads(args.render.read_text())
        render(payload, args.out, args.publish)
        return 0
    models = _pick_models(args.models, args.quick)
    engines = _pick_engines(args.engines)
    options = _options(args)
    sizes: list[int] = []
    if args.sweep:
        range_text = args.sweep_range or ("3,5" if args.quick else "3,7")
        lo, hi = (float(x) for x in range_text.split(","))
        sizes = sweep_sizes(lo, hi)

    print(
        f"mixedmodels bench: {len(models)} models, sweep {len(sizes)} sizes, "
        f"engines {', '.join(engines)}",
        file=sys.stderr,
    )
    recorder = Recorder(
        args.out / "results.json",
        {
            "command": "python bench/run.py "
            + " ".join(argv if argv is not None else sys.argv[1:]),
            "started": dt.datetime.now(dt.timezone.utc).isoformat(),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
            f"{platform.system()} {platform.release()}",
            "cores": os.cpu_count(),
            "load_average_start": os.getloadavg(),
            "versions": _versions(engines),
            "options": {**asdict(options), "data_dir": str(options.data_dir)},
            "engines": engines,
            "models": [m.id for m in models],
            "sweep_sizes": sizes,
        },
    )
    run_models(models, engines, options, recorder)
    run_sweep(sizes, engines, options, recorder)
    recorder.payload["load_average_end"] = os.getloadavg()
    recorder.save()
    render(recorder.payload, args.out, args.publish)
    statuses = [item["status"] for item in recorder.payload["results"]]
    return 0 if OK in statuses or not statuses else 1


if __name__ == "__main__":
    sys.exit(main())
