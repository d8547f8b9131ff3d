"""lme4 in R, through ``Rscript bench/lme4_fit.R`` on a CSV copy of the data."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from bench.models import BenchModel

NAME = "lme4"
INSTALL_HINT = "install R and lme4: apt-get install r-base-core r-cran-lme4 r-cran-data.table"
SCRIPT = Path(__file__).resolve().parents[1] / "lme4_fit.R"


def unavailable() -> str | None:
    """None if ``Rscript`` runs and loads lme4, else how to install them."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        return f"Rscript not found ({INSTALL_HINT})"
    probe = [rscript, "-e", 'quit(status = !requireNamespace("lme4", quietly = TRUE))']
    try:
        subprocess.run(probe, capture_output=True, timeout=60, check=True)
    except (subprocess.SubprocessError, OSError):
        return f"R has no lme4 ({INSTALL_HINT})"
    return None


def unsupported(_model: BenchModel) -> str | None:
    """None: every benchmark model is an lme4 formula."""
    return None


def command(
    model: BenchModel, csv_path: Path, repeat: int, budget: float, warmup: bool
) -> list[str]:
    """The Rscript command that fits ``model`` to the CSV and reports as a worker does."""
    rscript = shutil.which("Rscript") or "Rscript"
    return [
        rscript,
        str(SCRIPT),
        "--data",
        str(csv_path),
        "--formula",
        model.formula,
        "--reml",
        "TRUE" if model.reml else "FALSE",
        "--factors",
        ",".join(model.factors),
        "--repeat",
        str(repeat),
        "--budget",
        str(budget),
        "--warmup",
        "TRUE" if warmup else "FALSE",
        "--family",
        model.family or "",
        "--weights",
        model.weights or "",
    ]


def version() -> str | None:
    """lme4's version as R reports it, or None if it cannot be asked."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        return None
    probe = [
        rscript,
        "-e",
        'cat(format(packageVersion("lme4")), " (", R.version.string, ")", sep = "")',
    ]
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=60, check=True)
    except (subprocess.SubprocessError, OSError):
        return None
    return done.stdout.strip() or None
