"""The ``mixedmodels`` command: fit a model to a file, list the bundled data sets.

::

    mixedmodels fit data.csv "Reaction ~ Days + (Days | Subject)"
    mixedmodels fit data.parquet "y ~ x" --groups g --ml --json
    cat data.csv | mixedmodels fit - "y ~ x + (1 | g)" --ddf kenward-roger
    mixedmodels fit cbpp "cbind(incidence, size - incidence) ~ period + (1 | herd)" \
        --family binomial
    mixedmodels fit data.csv "y ~ x + (1 | g)" --family poisson --link sqrt --nagq 9
    mixedmodels datasets

``--family`` fits a generalized linear mixed model (lme4's ``glmer``) and
prints lme4's glmer summary; ``--link``, ``--nagq`` and ``--weights`` go with it
(``--weights`` also weights a linear model).

``python -m mixedmodels`` is the same command (without arguments it fits the
sleepstudy example and says so).  The printed summary and the ``--json``
document are two renderings of one summary content
(:class:`~mixedmodels.results.summary.ModelSummary`).

Errors are reported on stderr with exit status 1 (2 for a bad command line,
as argparse does): one line, followed for a formula error by the formula and
a caret under the fault.  Warnings from the fit (singular fit, convergence)
are one line each on stderr and, with ``--json``, listed in the document.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import pandas as pd

from .. import __version__, datasets
from ..errors import CommandError, MixedModelsError
from ..families import get_family
from ..formula import parse_formula, r_name
from ..models.glmm import GeneralizedLinearMixedModel
from ..models.lmm import LinearMixedModel
from ..results.summary import ModelSummary, summarize
from .data_file import DEFAULT_MAX_BYTES, parse_size, read_table

PROG = "mixedmodels"
DDF_METHODS = ("satterthwaite", "kenward-roger", "none")


# -- reading the data ---------------------------------------------------------------


def read_data(
    source: str, stdin: io.TextIOBase | None = None, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[pd.DataFrame, str]:
    """Read the table a command names: a CSV or Parquet file, ``-``, or a bundled data set.

    See :func:`mixedmodels.frontends.data_file.read_table` (compressed files,
    the bound ``max_bytes`` on what a stream or a decompressor gives).

    Returns
    -------
    (DataFrame, str)
        The data and the name to show in the summary.
    """
    return read_table(source, stdin=stdin, max_bytes=max_bytes)


# -- fitting --------------------------------------------------------------------------


def with_groups(formula: str, groups: str | None) -> str:
    """Add statsmodels' ``groups=``: a random intercept ``(1 | COL)``.

    Nothing is added when the formula already has a term grouped by ``COL``
    (``groups`` then only repeats what the formula says).

    Examples
    --------
    >>> with_groups("Weight ~ Time", "Pig")
    'Weight ~ Time + (1 | Pig)'
    >>> with_groups("Weight ~ Time + (Time | Pig)", "Pig")
    'Weight ~ Time + (Time | Pig)'
    >>> with_groups("y ~ x", "my group")
    'y ~ x + (1 | `my group`)'
    """
    if not groups:
        return formula
    parsed = parse_formula(formula)
    if any(term.group == (groups,) for term in parsed.random):
        return formula
    if "`" in groups:
        raise CommandError(f"--groups {groups!r}: a column name cannot hold a backtick here")
    # A name R would not read bare ("my group") goes in backticks.
    return f"{formula} + (1 | {r_name(groups)})"


def fit_model(
    data: pd.DataFrame,
    formula: str,
    *,
    ml: bool,
    groups: str | None,
    family: str | None = None,
    link: str | None = None,
    nagq: int = 1,
    weights: str | None = None,
) -> tuple[LinearMixedModel | GeneralizedLinearMixedModel, list[str]]:
    """Fit the model (a GLMM when ``family`` is given), collecting warnings as one-line
    messages."""
    if groups is not None and groups not in data.columns:
        raise CommandError(f"--groups column {groups!r} is not in the data")
    if weights is not None and weights not in data.columns:
        raise CommandError(f"--weights column {weights!r} is not in the data")
    if family is None and (link is not None or nagq != 1):
        raise CommandError("--link and --nagq are for a generalized model: give --family too")
    formula = with_groups(formula, groups)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if family is None:
            model = LinearMixedModel(formula, data, reml=not ml, weights=weights).fit()
        else:
            try:
                chosen = get_family(family, link)
            except (TypeError, ValueError) as err:
                raise CommandError(f"--family {family}: {err}") from None
            model = GeneralizedLinearMixedModel(formula, data, chosen, weights=weights)
            model.fit(nagq=nagq)
    messages = []
    for w in caught:
        text = " ".join(str(w.message).split())
        if text not in messages:
            messages.append(text)
    return model, messages


# -- output ---------------------------------------------------------------------------


def _json_number(value: Any) -> float | int | None:
    """A JSON-safe number: NaN and infinities become null."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def result_document(
    model: LinearMixedModel | GeneralizedLinearMixedModel,
    summary: ModelSummary,
    *,
    data_name: str,
    messages: list[str],
) -> dict[str, Any]:
    """The ``--json`` document: the printed summary's content, and the fit's details.

    ``fixed_effects`` is the summary's table (``df`` and ``p_value`` from the
    ``--ddf`` method, null with ``--ddf none``); ``variance_components`` are
    R's ``as.data.frame(VarCorr(m))`` rows; ``summary`` is the whole content
    the text shows (:meth:`ModelSummary.as_dict`).
    """
    content = summary.as_dict()
    statistic = f"{summary.statistic}_value"  # t_value, or z_value for a GLMM
    fixed = [
        {
            "term": f["term"],
            "estimate": f["estimate"],
            "std_error": f["std_error"],
            "df": f["df"],
            statistic: f["statistic"],
            "p_value": f["p_value"],
        }
        for f in content["fixed_effects"]
    ]
    components = [
        {
            "group": row.group,
            "var1": row.var1 if isinstance(row.var1, str) else None,
            "var2": row.var2 if isinstance(row.var2, str) else None,
            "vcov": _json_number(row.vcov),
            "sdcor": _json_number(row.sdcor),
        }
        for row in model.varcorr.itertuples(index=False)
    ]
    document = {
        "formula": summary.formula,
        "data": data_name,
        "method": "REML" if model.reml else "ML",
        "ddf": summary.ddf,
        "nobs": summary.nobs,
        "ngroups": content["ngroups"],
        "fixed_effects": fixed,
        "variance_components": components,
        "fit": {
            "objective": _json_number(model.objective),
            "loglik": _json_number(model.loglik),
            "aic": _json_number(model.aic),
            "bic": _json_number(model.bic),
            "deviance": _json_number(model.deviance),
            "sigma": _json_number(model.sigma),
            "n_params": model.n_params,
            "df_resid": model.nobs - model.n_params,
            "converged": model.converged,
            "singular": model.is_singular,
        },
        "theta": dict(zip(model.theta_names, map(_json_number, model.theta), strict=True)),
        "summary": content,
        "warnings": messages,
    }
    if isinstance(model, GeneralizedLinearMixedModel):
        # Its deviance is lme4's: Σ squared deviance residuals (the objective is −2 log L).
        document["family"] = model.family.name
        document["link"] = model.family.link.name
        document["nagq"] = model.state.nagq
        document["method"] = (
            "ML (Laplace)"
            if model.state.nagq == 1
            else (
                f"ML (adaptive Gauss-Hermite quadrature, nAGQ = {model.state.nagq})"
                if model.state.nagq > 1
                else "ML (nAGQ = 0)"
            )
        )
    return document


# -- commands -------------------------------------------------------------------------


def _cmd_fit(args: argparse.Namespace, out: io.TextIOBase) -> int:
    family = getattr(args, "family", None)
    if family is not None and (args.ml or args.ddf is not None):
        raise CommandError(
            "--ml and --ddf are for linear models: a GLMM is fitted by maximum likelihood "
            "and tested by z tests"
        )
    data, data_name = read_data(args.data, max_bytes=args.max_bytes)
    model, messages = fit_model(
        data,
        args.formula,
        ml=args.ml,
        groups=args.groups,
        family=family,
        link=getattr(args, "link", None),
        nagq=getattr(args, "nagq", 1),
        weights=getattr(args, "weights", None),
    )
    model.data_name = data_name
    if isinstance(model, GeneralizedLinearMixedModel):
        summary = model.summary()
    else:
        requested = args.ddf or "satterthwaite"
        ddf = None if requested == "none" else requested
        try:
            summary = summarize(model, ddf=ddf)
        except MixedModelsError as err:
            raise CommandError(f"--ddf {requested}: {err}") from None
    for message in messages:
        print(f"{PROG}: warning: {message}", file=sys.stderr)
    if args.json:
        document = result_document(model, summary, data_name=data_name, messages=messages)
        out.write(json.dumps(document, indent=2, allow_nan=False) + "\n")
        return 0
    out.write(summary.as_text() + "\n")
    return 0


def _cmd_example(out: io.TextIOBase) -> int:
    print(
        f"{PROG}: no command given: fitting the sleepstudy example "
        f"(`{PROG} --help` lists the commands)",
        file=sys.stderr,
    )
    args = argparse.Namespace(
        data="sleepstudy",
        formula="Reaction ~ Days + (Days | Subject)",
        ml=False,
        ddf=None,
        groups=None,
        json=False,
        max_bytes=DEFAULT_MAX_BYTES,
    )
    return _cmd_fit(args, out)


def _cmd_datasets(args: argparse.Namespace, out: io.TextIOBase) -> int:
    if args.long:
        out.write(datasets.describe().to_string() + "\n")
    else:
        out.write("\n".join(datasets.names()) + "\n")
    return 0


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``mixedmodels`` command."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Linear mixed-effects models with lme4 formulas.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    fit = commands.add_parser(
        "fit",
        help="fit a linear (or, with --family, generalized linear) mixed model and print "
        "its summary",
        description="Fit a linear mixed model (REML unless --ml), or with --family a "
        "generalized linear mixed model, and print lme4's summary.",
    )
    fit.add_argument(
        "data",
        metavar="DATA",
        help="CSV or Parquet (.parquet/.pq) file; '-' reads CSV from standard input; "
        "or the name of a bundled data set",
    )
    fit.add_argument(
        "formula", metavar="FORMULA", help="lme4 formula, e.g. 'y ~ x + (x | g)' (quote it)"
    )
    fit.add_argument("--ml", action="store_true", help="maximum likelihood instead of REML")
    fit.add_argument(
        "--ddf",
        choices=DDF_METHODS,
        default=None,
        help="denominator degrees of freedom of the t tests on the fixed effects "
        "(default satterthwaite, as lmerTest; none: lme4's table without df and p values)",
    )
    fit.add_argument(
        "--family",
        metavar="NAME",
        help="fit a generalized linear mixed model (lme4's glmer): binomial, poisson, Gamma "
        "or inverse.gaussian",
    )
    fit.add_argument(
        "--link",
        metavar="NAME",
        help="the family's link (default its canonical one): e.g. probit, cloglog, log, sqrt",
    )
    fit.add_argument(
        "--nagq",
        type=int,
        default=1,
        metavar="N",
        help="GLMM: 1 for the Laplace approximation (default), N > 1 adaptive quadrature "
        "points (one scalar random-effects term), 0 for the fast approximation",
    )
    fit.add_argument(
        "--weights",
        metavar="COL",
        help="column of prior weights (for a binomial GLMM of proportions: the trials)",
    )
    fit.add_argument(
        "--groups",
        metavar="COL",
        help="add a random intercept (1 | COL), as statsmodels' groups= does",
    )
    fit.add_argument("--json", action="store_true", help="print a JSON document instead")
    fit.add_argument(
        "--max-bytes",
        metavar="SIZE",
        type=_size,
        default=DEFAULT_MAX_BYTES,
        help="read at most SIZE (e.g. 500M, 4G; default 2G) from standard input, a pipe "
        "or a compressed file",
    )
    fit.set_defaults(handler=_cmd_fit)

    listing = commands.add_parser(
        "datasets", help="list the bundled data sets", description="List the bundled data sets."
    )
    listing.add_argument(
        "-l", "--long", action="store_true", help="with rows, columns and factor columns"
    )
    listing.set_defaults(handler=_cmd_datasets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (default ``sys.argv[1:]``).  No command at all fits the
        sleepstudy example (what ``python -m mixedmodels`` shows a newcomer).
    """
    args = build_parser().parse_args(argv)
    try:
        if args.command is None:
            return _cmd_example(sys.stdout)
        return args.handler(args, sys.stdout)
    except (CommandError, MixedModelsError) as err:
        message = str(err)
    except MemoryError:
        message = "out of memory"
    except (OSError, ValueError) as err:
        # Anything else the inputs can provoke, still as one line.
        message = f"{type(err).__name__}: {err}"
    except KeyboardInterrupt:
        message = "interrupted"
    except RecursionError:
        message = "the input is nested too deeply to be read"
    except Exception as err:
        if os.environ.get("MIXEDMODELS_TRACEBACK"):
            raise
        # A fault of ours, not of the input: one line still, and how to see more.
        message = (
            f"internal error ({type(err).__name__}: {err}); please report it "
            "(set MIXEDMODELS_TRACEBACK=1 for the traceback)"
        )
    print(error_text(message), file=sys.stderr)
    return 1


def error_text(message: str) -> str:
    """``mixedmodels: error: ...`` on one line; a formula and its caret keep their lines.

    A :class:`~mixedmodels.errors.FormulaError` shows the formula on an
    indented line and a caret under the fault on the next: those two lines
    are kept as they are (joined, the caret would point nowhere).
    """
    lines = message.splitlines()
    caret = next((i for i, line in enumerate(lines) if i > 0 and line.strip() == "^"), None)
    if caret is None:
        return f"{PROG}: error: {' '.join(message.split())}"
    head = " ".join(" ".join(lines[: caret - 1]).split())
    return "\n".join([f"{PROG}: error: {head}", lines[caret - 1], lines[caret]])


if __name__ == "__main__":
    sys.exit(main())
