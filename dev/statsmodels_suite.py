"""Run statsmodels' own MixedLM tests against this package; print how many pass.

statsmodels ships its linear mixed model tests with its wheel
(``statsmodels/regression/tests/test_lme.py`` and the R results beside it).
This script copies that file into a temporary folder at run time (nothing of
statsmodels is kept in this repository), adds a ``conftest.py`` that points
statsmodels' model classes at this package's, and runs pytest on it:

* ``statsmodels.regression.mixed_linear_model.MixedLM`` and ``MixedLMParams``,
  ``statsmodels.api.MixedLM`` and ``statsmodels.formula.api.mixedlm`` become
  ``mixedmodels.MixedLM``, ``mixedmodels.MixedLMParams`` and
  ``mixedmodels.mixedlm``.  Nothing else changes: the tests, their data, their
  imports of statsmodels' helpers, penalties, ``summary2`` and warning classes
  are statsmodels' own.

Which tests count
-----------------
Every test the file collects (slow ones included), except

* the 32 tests of the classes ``TestSMWSolver`` and ``TestSMWLogdet``, which
  test statsmodels' private linear-algebra helpers ``_smw_solver`` and
  ``_smw_logdet``, not the model, and
* the 12 cases of ``test_r`` with ``irf=True`` and a data set numbered below 6,
  which return before building a model (``do1``'s first lines).

With statsmodels 0.15 that leaves 79 tests.  ``--reference`` runs the same
tests against statsmodels itself (expected: 79/79).

Usage (from the repository root)::

    PYTHONPATH=src python dev/statsmodels_suite.py              # this package
    PYTHONPATH=src python dev/statsmodels_suite.py --reference  # statsmodels itself
    PYTHONPATH=src python dev/statsmodels_suite.py -k dietox    # a subset (pytest -k)

Requires statsmodels and pytest (the ``dev`` extra).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

EXPECTED_COUNT = 79
TEST_FILE = "test_lme.py"
PACKAGE = "sm_lme"

# The pytest plugin written next to the copied test file.  It swaps the model
# classes (unless MIXEDMODELS_SUITE_REFERENCE is set) before the test module
# imports them, and records every test's outcome and parameters.
CONFTEST = """
import json
import os

import pytest

import statsmodels.api
import statsmodels.formula.api
import statsmodels.regression.mixed_linear_model as sm_mixed

SWAPPED = []
if not os.environ.get("MIXEDMODELS_SUITE_REFERENCE"):
    import mixedmodels

    sm_mixed.MixedLM = mixedmodels.MixedLM
    statsmodels.api.MixedLM = mixedmodels.MixedLM
    statsmodels.formula.api.mixedlm = mixedmodels.mixedlm
    SWAPPED = ["MixedLM", "mixedlm"]
    if hasattr(mixedmodels, "MixedLMParams"):
        sm_mixed.MixedLMParams = mixedmodels.MixedLMParams
        SWAPPED.append("MixedLMParams")

OUTCOMES = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    entry = OUTCOMES.setdefault(
        item.nodeid,
        {
            "name": item.name,
            "cls": item.cls.__name__ if item.cls is not None else None,
            "params": {
                k: (v if isinstance(v, (bool, int, float, str)) else repr(v))
                for k, v in getattr(getattr(item, "callspec", None), "params", {}).items()
            },
            "outcome": "passed",
            "reason": "",
            "seconds": 0.0,
        },
    )
    entry["seconds"] += report.duration
    if report.failed or (report.skipped and entry["outcome"] == "passed"):
        entry["outcome"] = "failed" if report.failed else "skipped"
        crash = getattr(report.longrepr, "reprcrash", None)
        if crash is not None:
            message = crash.message
        elif isinstance(report.longrepr, tuple):
            message = str(report.longrepr[-1])
        else:
            message = str(report.longrepr)
        lines = [line.strip() for line in message.splitlines() if line.strip()]
        entry["reason"] = f"[{report.when}] " + " | ".join(lines[:3])


def pytest_sessionfinish(session):
    with open(os.environ["MIXEDMODELS_SUITE_OUTPUT"], "w") as handle:
        json.dump({"swapped": SWAPPED, "tests": OUTCOMES}, handle)
"""

PYTEST_INI = """
[pytest]
markers =
    slow: slow
    smoke: smoke
    high_memory: high memory
    example: example
    matplotlib: matplotlib
    low_precision: low precision
    todo: todo
"""


def counts(entry: dict) -> bool:
    """Whether a collected test is one of the counted model tests (see the module doc)."""
    if entry["cls"] in ("TestSMWSolver", "TestSMWLogdet"):
        return False
    if entry["name"].startswith("test_r["):
        params = entry["params"]
        index = int(str(params["fname"])[3:5])
        if params["irf"] and index < 6:
            return False
    return True


def locate_tests() -> tuple[Path, Path, str]:
    try:
        import statsmodels
    except ImportError:
        sys.exit("statsmodels is not installed: pip install -e '.[dev]'")
    folder = Path(statsmodels.__file__).parent / "regression" / "tests"
    test_file = folder / TEST_FILE
    results = folder / "results"
    if not test_file.exists() or not results.is_dir():
        sys.exit(f"statsmodels {statsmodels.__version__} has no {test_file}")
    return test_file, results, statsmodels.__version__


def run(reference: bool, select: str | None, extra: list[str]) -> dict:
    test_file, results, _ = locate_tests()
    with tempfile.TemporaryDirectory(prefix="statsmodels_suite_") as tmp:
        root = Path(tmp)
        package = root / PACKAGE
        package.mkdir()
        (package / "__init__.py").write_text("")
        shutil.copy(test_file, package / TEST_FILE)
        (package / "results").symlink_to(results, target_is_directory=True)
        (root / "conftest.py").write_text(CONFTEST)
        (root / "pytest.ini").write_text(PYTEST_INI)
        output = root / "outcomes.json"
        env = dict(os.environ)
        env["MIXEDMODELS_SUITE_OUTPUT"] = str(output)
        if reference:
            env["MIXEDMODELS_SUITE_REFERENCE"] = "1"
        else:
            env.pop("MIXEDMODELS_SUITE_REFERENCE", None)
        # The caller's PYTHONPATH (PYTHONPATH=src for a worktree) must survive the chdir.
        paths = [str(Path(p).resolve()) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join(paths)
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            "--rootdir",
            str(root),
            "-c",
            str(root / "pytest.ini"),
            "--tb=line",
            "-rN",
            f"{PACKAGE}/{TEST_FILE}",
            *(["-k", select] if select else []),
            *extra,
        ]
        completed = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
        if not output.exists():
            sys.stdout.write(completed.stdout[-5000:])
            sys.stderr.write(completed.stderr[-5000:])
            sys.exit("pytest did not run the tests (see its output above)")
        return json.loads(output.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--reference", action="store_true", help="run against statsmodels itself (no swap)"
    )
    parser.add_argument("-k", dest="select", help="pytest -k expression: run a subset")
    parser.add_argument("--json", type=Path, help="also write the outcomes to this file")
    parser.add_argument(
        "--durations", type=int, default=0, metavar="N", help="show the N slowest tests"
    )
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)

    _, _, version = locate_tests()
    payload = run(args.reference, args.select, args.pytest_args)
    entries = list(payload["tests"].values())
    counted = [e for e in entries if counts(e)]
    passed = [e for e in counted if e["outcome"] == "passed"]
    failed = [e for e in counted if e["outcome"] != "passed"]
    target = "statsmodels itself" if args.reference else "mixedmodels"
    if failed:
        print(f"Failing ({len(failed)}):")
        for entry in failed:
            reason = textwrap.shorten(entry["reason"] or entry["outcome"], 160)
            name = f"{entry['cls']}::{entry['name']}" if entry["cls"] else entry["name"]
            print(f"  {name}: {reason}")
    if args.durations:
        print(f"Slowest {args.durations}:")
        for entry in sorted(entries, key=lambda e: -e["seconds"])[: args.durations]:
            name = f"{entry['cls']}::{entry['name']}" if entry["cls"] else entry["name"]
            print(f"  {entry['seconds']:7.2f} s  {name}")
    print(f"(statsmodels {version}'s {TEST_FILE} against {target}; {len(entries)} collected)")
    if not args.select and len(counted) != EXPECTED_COUNT:
        print(f"note: {len(counted)} tests counted, not {EXPECTED_COUNT}: the file has changed")
    if not args.reference:
        print(f"swapped in: {', '.join(payload['swapped'])}")
    print(f"{len(passed)}/{len(counted)} statsmodels MixedLM tests pass")
    if args.json:
        args.json.write_text(json.dumps(payload, indent=1))
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
