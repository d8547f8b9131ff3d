"""The benchmark harness still runs: its quickest mode, mixedmodels only, a tiny model.

Speed itself is measured by ``python bench/run.py``, never asserted here.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    MEMORY,
    OK,
    TIMEOUT,
    UNAVAILABLE,
    UNSUPPORTED,
    Options,
    csv_for,
    run_engine,
)
from bench.models import get_model, sweep_sizes  # noqa: E402
from bench.report import format_seconds  # noqa: E402
from bench.run import main as bench_main  # noqa: E402
from bench.worker import timed_repeats  # noqa: E402

LME4_SLEEPSTUDY = ROOT / "tests" / "data" / "lmm" / "sleepstudy_slope_reml.json"


def test_quick_run_fits_sleepstudy_like_lme4(tmp_path: Path, capsys) -> None:
    # run.main in this process (the fit itself still runs in a worker subprocess).
    argv = ["--quick", "--engines", "mixedmodels", "--models", "sleepstudy", "--no-sweep"]
    assert bench_main([*argv, "--repeat", "1", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    assert [(r["engine"], r["model"], r["status"]) for r in results] == [
        ("mixedmodels", "sleepstudy", OK)
    ]
    (result,) = results
    assert result["seconds"] > 0
    assert result["peak_rss_bytes"] > 0
    # The bench fitted the model lme4 fitted, to lme4's optimum.
    lme4 = json.loads(LME4_SLEEPSTUDY.read_text())
    assert result["objective"] == pytest.approx(lme4["objective"], abs=1e-4)
    assert "| sleepstudy | 180 |" in (tmp_path / "RESULTS.md").read_text()
    assert "sleepstudy" in capsys.readouterr().out


def test_a_slow_fit_is_killed_and_recorded_as_timeout(tmp_path: Path) -> None:
    # Building the design of 10^6 rows alone takes far longer than 50 ms.
    options = Options(repeat=1, fit_timeout=0.05, data_dir=tmp_path)
    result = run_engine("mixedmodels", get_model("sweep:1000000"), options)
    assert result.status == TIMEOUT
    assert result.seconds is None


@pytest.mark.parametrize("with_psutil", [True, False])
def test_memory_guard_kills_the_process(tmp_path: Path, monkeypatch, with_psutil: bool) -> None:
    if not with_psutil:
        # The test extra has no psutil: the guard then reads /proc.
        if not Path("/proc/self/status").exists():
            pytest.skip("no /proc on this system")
        monkeypatch.setitem(sys.modules, "psutil", None)
    elif importlib.util.find_spec("psutil") is None:
        pytest.skip("psutil is not installed")
    # A Python interpreter with numpy and pandas loaded is well over 10 MB.
    options = Options(repeat=1, memory_limit_gb=0.01, data_dir=tmp_path)
    result = run_engine("mixedmodels", get_model("sleepstudy"), options)
    assert result.status == MEMORY


def test_crossed_model_is_not_sent_to_statsmodels(tmp_path: Path) -> None:
    if importlib.util.find_spec("statsmodels") is None:
        pytest.skip("statsmodels (the bench extra) is not installed")
    result = run_engine("statsmodels", get_model("penicillin_crossed"), Options(data_dir=tmp_path))
    assert result.status == UNSUPPORTED
    assert "crossed" in result.message


def test_missing_r_is_reported_with_how_to_install_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no Rscript on this PATH
    result = run_engine("lme4", get_model("sleepstudy"), Options(data_dir=tmp_path))
    assert result.status == UNAVAILABLE
    assert "apt-get install" in result.message and "r-cran-lme4" in result.message


def test_r_gets_a_fresh_csv_whenever_the_data_change(tmp_path: Path) -> None:
    model = get_model("sleepstudy")
    path = csv_for(model, tmp_path)
    assert len(pd.read_csv(path)) == 180
    path.write_text("Reaction,Days,Subject\n1,2,3\n")  # a stale copy...
    path.with_suffix(".sha256").write_text("180 stale")  # ...of other data
    assert len(pd.read_csv(csv_for(model, tmp_path))) == 180


def test_sweep_sizes_are_log_spaced_whole_groups() -> None:
    sizes = sweep_sizes(3, 7)
    assert sizes[0] == 1_000 and sizes[-1] == 10_000_000 and len(sizes) == 9
    assert all(size % 20 == 0 for size in sizes)
    assert sizes == sorted(sizes)


def test_slow_fits_are_timed_fewer_times() -> None:
    assert timed_repeats(0.001, repeat=5, budget=10) == 5
    assert timed_repeats(4.0, repeat=5, budget=10) == 2
    assert timed_repeats(90.0, repeat=5, budget=10) == 1


def test_times_print_in_readable_units() -> None:
    assert format_seconds(0.00045) == "0.45 ms"
    assert format_seconds(0.0123) == "12.3 ms"
    assert format_seconds(2.5) == "2.5 s"


def test_glmm_models_run_and_reach_lme4s_optimum(tmp_path: Path) -> None:
    """A GLMM of the bench (cbpp as proportions with trials as weights) is lme4's model."""
    result = run_engine("mixedmodels", get_model("cbpp"), Options(repeat=1, data_dir=tmp_path))
    assert result.status == OK, result.message
    reference = json.loads(
        (Path(__file__).parent / "data" / "glmm" / "cbpp_weights_logit.json").read_text()
    )
    assert result.objective == pytest.approx(reference["objective"], abs=1e-3)
    statsmodels = run_engine("statsmodels", get_model("cbpp"), Options(data_dir=tmp_path))
    assert statsmodels.status in (UNSUPPORTED, UNAVAILABLE)
