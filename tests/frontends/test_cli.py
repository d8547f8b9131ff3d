"""The ``mixedmodels`` command, run as a subprocess and compared with lme4's numbers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mixedmodels as mm
from mixedmodels.frontends import cli
from tests.conftest import read_reference


def _ref(name: str) -> dict:
    return read_reference(f"lmm/{name}")


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """The command as a user runs it (``python -m mixedmodels`` reaches the same ``main``)."""
    return subprocess.run(
        [sys.executable, "-m", "mixedmodels.frontends.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def sleepstudy_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "sleepstudy.csv"
    mm.datasets.load("sleepstudy").to_csv(path, index=False)
    return path


def _check_fixed_and_components(doc: dict, ref: dict) -> None:
    fixed = doc["fixed_effects"]
    assert [f["term"] for f in fixed] == ref["fixef_names"]
    se = np.array(ref["stderr"])
    estimates = np.array([f["estimate"] for f in fixed])
    want = np.array([ref["fixef"][n] for n in ref["fixef_names"]])
    np.testing.assert_array_less(np.abs(estimates - want), 0.01 * se)
    np.testing.assert_allclose([f["std_error"] for f in fixed], se, rtol=5e-3)
    np.testing.assert_allclose([f["t_value"] for f in fixed], ref["tvalue"], rtol=5e-3)
    assert doc["fit"]["sigma"] == pytest.approx(ref["sigma"], rel=5e-3)
    assert doc["fit"]["objective"] <= ref["objective"] + 1e-4
    assert doc["fit"]["objective"] == pytest.approx(ref["objective"], abs=1e-2)
    assert doc["fit"]["aic"] == pytest.approx(ref["AIC"], abs=1e-2)
    assert doc["fit"]["bic"] == pytest.approx(ref["BIC"], abs=1e-2)
    assert doc["fit"]["n_params"] == ref["df_logLik"]
    assert doc["nobs"] == ref["nobs"]
    assert doc["ngroups"] == ref["ngroups"]
    for block in ref["varcorr"]:
        sds = [
            c["sdcor"]
            for c in doc["variance_components"]
            if c["group"] == block["group"] and c["var2"] is None
        ]
        np.testing.assert_allclose(sds, block["sd"], rtol=1e-2)


def test_fit_json_matches_lme4(sleepstudy_csv):
    ref = _ref("sleepstudy_slope_reml")
    done = run("fit", str(sleepstudy_csv), ref["formula"], "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["method"] == "REML"
    assert doc["data"] == "sleepstudy.csv"
    _check_fixed_and_components(doc, ref)
    # Satterthwaite's df and p values by default, as lmerTest's summary.
    assert doc["ddf"] == "Satterthwaite"
    fixed = doc["fixed_effects"]
    np.testing.assert_allclose([f["df"] for f in fixed], ref["satterthwaite"]["df"], rtol=1e-3)
    np.testing.assert_allclose([f["p_value"] for f in fixed], ref["satterthwaite"]["p"], rtol=1e-2)
    assert doc["warnings"] == []
    # The document holds what the printed summary shows.
    assert doc["summary"]["fixed_effects"][0]["p_value"] == fixed[0]["p_value"]
    assert doc["summary"]["criteria"]["REML criterion at convergence"] == pytest.approx(
        ref["objective"], abs=1e-2
    )


def test_fit_ml_from_stdin(sleepstudy_csv):
    ref = _ref("sleepstudy_slope_ml")
    done = run("fit", "-", ref["formula"], "--ml", "--json", stdin=sleepstudy_csv.read_text())
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["method"] == "ML"
    assert doc["data"] == "stdin"
    _check_fixed_and_components(doc, ref)
    assert doc["fit"]["deviance"] == pytest.approx(doc["fit"]["objective"])


def test_fit_parquet_with_groups(tmp_path):
    pytest.importorskip("pyarrow")
    ref = _ref("dietox_intercept_reml")
    path = tmp_path / "dietox.parquet"
    mm.datasets.load("dietox").to_parquet(path)
    # statsmodels' spelling: the random intercept comes from --groups.
    done = run("fit", str(path), "Weight ~ Time", "--groups", "Pig", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["formula"] == "Weight ~ Time + (1 | Pig)"
    _check_fixed_and_components(doc, ref)


def test_fit_prints_lme4_summary(sleepstudy_csv):
    ref = _ref("sleepstudy_slope_reml")
    done = run("fit", str(sleepstudy_csv), ref["formula"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Linear mixed model fit by REML")
    assert f"REML criterion at convergence: {ref['objective']:.1f}" in done.stdout
    assert "Data: sleepstudy.csv" in done.stdout


def test_ddf_kenward_roger_replaces_satterthwaite(sleepstudy_csv):
    ref = _ref("sleepstudy_slope_reml")
    done = run("fit", str(sleepstudy_csv), ref["formula"], "--ddf", "kenward-roger", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["ddf"] == "Kenward-Roger"
    np.testing.assert_allclose(
        [f["df"] for f in doc["fixed_effects"]], ref["kenward_roger"]["df"], rtol=1e-3
    )
    text = run("fit", str(sleepstudy_csv), ref["formula"], "--ddf", "kenward-roger").stdout
    assert text.startswith("Linear mixed model fit by REML. t-tests use Kenward-Roger's method")
    assert text.count("Fixed effects") == 1 and "Satterthwaite" not in text


def test_ddf_none_is_lme4s_table(sleepstudy_csv):
    done = run(
        "fit", str(sleepstudy_csv), "Reaction ~ Days + (Days | Subject)", "--ddf", "none", "--json"
    )
    doc = json.loads(done.stdout)
    assert doc["ddf"] is None
    assert all(f["df"] is None and f["p_value"] is None for f in doc["fixed_effects"])


def test_kenward_roger_of_an_ml_fit_is_refused(capsys):
    status = cli.main(
        ["fit", "sleepstudy", "Reaction ~ Days + (1 | Subject)", "--ml", "--ddf", "kenward-roger"]
    )
    assert status == 1
    assert "kenward-roger" in capsys.readouterr().err


def test_python_m_mixedmodels_is_the_command(sleepstudy_csv):
    command = [sys.executable, "-m", "mixedmodels"]
    done = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "fit" in done.stdout and "datasets" in done.stdout
    done = subprocess.run(
        [*command, "fit", str(sleepstudy_csv), "Reaction ~ Days + (1 | Subject)"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Formula: Reaction ~ Days + (1 | Subject)" in done.stdout
    assert "Data: sleepstudy.csv" in done.stdout


def test_python_m_mixedmodels_alone_runs_the_example_and_says_so():
    done = subprocess.run(
        [sys.executable, "-m", "mixedmodels"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "no command given: fitting the sleepstudy example" in done.stderr
    assert "Formula: Reaction ~ Days + (Days | Subject)" in done.stdout


def test_formula_error_puts_the_caret_under_the_fault(sleepstudy_csv, capsys):
    formula = "Reaction ~ Days + (Days | Subject"
    assert cli.main(["fit", str(sleepstudy_csv), formula]) == 1
    lines = capsys.readouterr().err.rstrip("\n").splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith("mixedmodels: error: ") and "never closed" in lines[0]
    assert lines[1].strip() == formula
    column = lines[2].index("^")
    assert lines[1][column] == "(" and lines[1][column:].startswith("(Days | Subject")


def test_datasets_command_lists_the_data_sets():
    done = run("datasets")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == mm.datasets.names()


def test_error_in_a_subprocess_is_one_line(sleepstudy_csv):
    done = run("fit", str(sleepstudy_csv), "Reaction ~ Days + (1 | Nobody)")
    assert done.returncode == 1
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("mixedmodels: error: ")
    assert "'Nobody'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("fit", "{tmp}/absent.csv", "y ~ x + (1 | g)"), "no such file"),
        (("fit", "{csv}", "Reaction ~ Days", "--groups", "Patient"), "'Patient'"),
        (("fit", "{csv}", "Reaction ~ Days"), "no random-effects terms"),
        (("fit", "{tmp}", "y ~ x + (1 | g)"), "directory"),
        (("fit", "{binary}", "y ~ x + (1 | g)"), "cannot read"),
    ],
)
def test_errors_are_one_line(args, fragment, sleepstudy_csv, tmp_path, capsys):
    binary = tmp_path / "image.csv"
    binary.write_bytes(bytes(range(256)) * 4)
    args = [a.format(csv=sleepstudy_csv, tmp=tmp_path, binary=binary) for a in args]
    assert cli.main(args) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("mixedmodels: error: ")
    assert fragment in lines[0]


def test_usage_error_exits_2():
    done = run("fit", "only-one-argument")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr


def test_warnings_go_to_stderr_and_json(capsys):
    # Dyestuff2's batch variance is estimated as zero: a singular fit.
    status = cli.main(["fit", "Dyestuff2", "Yield ~ 1 + (1 | Batch)", "--json"])
    captured = capsys.readouterr()
    assert status == 0
    doc = json.loads(captured.out)
    assert doc["fit"]["singular"] is _ref("dyestuff2_singular_reml")["is_singular"] is True
    assert any("singular" in w for w in doc["warnings"])
    assert "mixedmodels: warning: boundary (singular) fit" in captured.err


def test_empty_stdin_is_an_error(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO(""))
    assert cli.main(["fit", "-", "y ~ x + (1 | g)"]) == 1
    assert "no data on standard input" in capsys.readouterr().err


def test_with_groups_keeps_an_existing_term():
    assert cli.with_groups("y ~ x + (x | g)", "g") == "y ~ x + (x | g)"
    assert cli.with_groups("y ~ x + (x | g)", "h") == "y ~ x + (x | g) + (1 | h)"
    assert cli.with_groups("y ~ x", None) == "y ~ x"


# -- generalized linear mixed models ---------------------------------------------------

CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


def test_family_fits_a_glmm_with_lme4s_numbers(capsys):
    ref = read_reference("glmm/cbpp_trials_logit")
    assert cli.main(["fit", "cbpp", CBPP, "--family", "binomial", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["family"], doc["link"], doc["nagq"]) == ("binomial", "logit", 1)
    assert doc["method"] == "ML (Laplace)"
    fixed = doc["fixed_effects"]
    assert [f["term"] for f in fixed] == ref["fixef_names"]
    se = np.array(ref["stderr"])
    estimates = np.array([f["estimate"] for f in fixed])
    want = np.array([ref["fixef"][n] for n in ref["fixef_names"]])
    np.testing.assert_array_less(np.abs(estimates - want), 0.02 * se)
    np.testing.assert_allclose([f["z_value"] for f in fixed], ref["zvalue"], rtol=0.02)
    assert all(f["df"] is None for f in fixed)  # z tests: no df
    assert doc["fit"]["objective"] <= ref["objective"] + 1e-4
    assert doc["fit"]["deviance"] == pytest.approx(ref["deviance"], abs=1e-2)
    assert doc["fit"]["aic"] == pytest.approx(ref["AIC"], abs=1e-2)
    assert doc["summary"]["statistic"] == "z"


def test_family_prints_lme4s_glmer_summary():
    done = run("fit", "cbpp", CBPP, "--family", "binomial", "--link", "probit")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == (
        "Generalized linear mixed model fit by maximum likelihood (Laplace Approximation)"
    )
    assert lines[1] == " Family: binomial  ( probit )"
    assert "            Estimate Std. Error z value Pr(>|z|)" in lines


def test_quadrature_and_weights_from_the_command_line(tmp_path, capsys):
    ref = read_reference("glmm/cbpp_nagq9")
    path = tmp_path / "cbpp.csv"
    data = mm.datasets.load("cbpp")
    data["prop"] = data["incidence"] / data["size"]
    data.to_csv(path, index=False)
    args = ["fit", str(path), "prop ~ C(period) + (1 | herd)", "--family", "binomial"]
    assert cli.main([*args, "--weights", "size", "--nagq", "9", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["nagq"] == 9
    assert doc["fit"]["objective"] == pytest.approx(ref["objective"], abs=1e-3)


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--family", "binomial", "--ml"], "--ml and --ddf are for linear models"),
        (["--link", "probit"], "give --family too"),
        (["--family", "bernoulli"], "--family bernoulli: unknown family"),
        (["--family", "binomial", "--link", "sqrt"], "link 'sqrt' is not available"),
        (["--family", "binomial", "--weights", "trials"], "--weights column 'trials'"),
    ],
)
def test_glmm_option_errors_are_one_line(extra, fragment, capsys):
    assert cli.main(["fit", "cbpp", CBPP, *extra]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mixedmodels: error: ")
    assert fragment in err[0], err[0]
