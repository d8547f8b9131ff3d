"""The ``mixedmodels`` command: fit a model to a file, list the bundled data sets.

::

    mixedmodels fit data.csv "Reaction ~ Days + (Days | Subject)"
    mixedmodels fit data.parquet "y ~ x" --groups g --ml --json
    cat data.csv | mixedmodels fit - "y ~ x + (1 | g)" --ddf satterthwaite
    mixedmodels datasets

Errors are reported as one line on stderr with exit status 1 (2 for a bad
command line, as argparse does); warnings from the fit (singular fit,
convergence) are one line each on stderr and, with ``--json``, listed in the
document.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import __version__, datasets
from ..errors import MixedModelsError
from ..formula import parse_formula
from ..models.lmm import LinearMixedModel

PROG = "mixedmodels"
DDF_METHODS = ("satterthwaite", "kenward-roger")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_NO_DDF = (
    "--ddf {ddf} needs the inference module (LinearMixedModel.coef_table), "
    "which this installation of mixedmodels does not have"
)


class CommandError(Exception):
    """A problem to report on one line of stderr, without a traceback."""


# -- reading the data ---------------------------------------------------------------


def read_data(source: str, stdin: io.TextIOBase | None = None) -> tuple[pd.DataFrame, str]:
    """Read the table a command names: a CSV or Parquet file, ``-``, or a bundled data set.

    Parameters
    ----------
    source : str
        A path ending in ``.parquet``/``.pq`` (Parquet) or anything else
        (CSV, possibly compressed: pandas infers that from the suffix); ``-``
        for CSV on standard input; or, when no such file exists, the name of a
        bundled data set (``sleepstudy``).
    stdin : text stream, optional
        Where ``-`` reads from (default :data:`sys.stdin`).

    Returns
    -------
    (DataFrame, str)
        The data and the name to show in the summary.
    """
    if source == "-":
        text = (stdin or sys.stdin).read()
        if not text.strip():
            raise CommandError("no data on standard input")
        return _read_csv(io.StringIO(text), "standard input"), "stdin"
    path = Path(source)
    if not path.exists():
        if source.lower() in {n.lower() for n in datasets.names()}:
            return datasets.load(source), source
        raise CommandError(f"no such file: {source}")
    if path.is_dir():
        raise CommandError(f"{source} is a directory, not a data file")
    if path.suffix.lower() in _PARQUET_SUFFIXES:
        try:
            frame = pd.read_parquet(path)
        except ImportError as err:
            raise CommandError(
                "reading Parquet needs pyarrow: pip install 'mixedmodels[dask]' or pyarrow"
            ) from err
        except Exception as err:
            raise CommandError(f"cannot read {source} as Parquet: {err}") from err
        return frame, path.name
    return _read_csv(path, source), path.name


def _read_csv(handle: Any, label: str) -> pd.DataFrame:
    try:
        frame = pd.read_csv(handle)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise CommandError(f"cannot read {label} as CSV: {err}") from err
    if frame.shape[1] < 2:
        raise CommandError(f"{label} has {frame.shape[1]} column(s): is it really a CSV file?")
    return frame


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
    """
    if not groups:
        return formula
    parsed = parse_formula(formula)
    if any(term.group == (groups,) for term in parsed.random):
        return formula
    return f"{formula} + (1 | {groups})"


def fit_model(
    data: pd.DataFrame, formula: str, *, ml: bool, groups: str | None
) -> tuple[LinearMixedModel, list[str]]:
    """Fit the model, collecting warnings as one-line messages."""
    if groups is not None and groups not in data.columns:
        raise CommandError(f"--groups column {groups!r} is not in the data")
    formula = with_groups(formula, groups)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = LinearMixedModel(formula, data, reml=not ml).fit()
    messages = []
    for w in caught:
        text = " ".join(str(w.message).split())
        if text not in messages:
            messages.append(text)
    return model, messages


def fixed_effects_table(model: LinearMixedModel, ddf: str | None) -> pd.DataFrame:
    """Estimate, SE, df, t and p per fixed effect; df and p need ``ddf``.

    The degrees of freedom come from the model's ``coef_table(ddf=...)``
    (Satterthwaite or Kenward–Roger, from the inference module); without
    ``ddf`` they are left empty, as lme4's summary leaves them.
    """
    coefs = model.coefs
    table = pd.DataFrame(
        {
            "estimate": coefs["estimate"],
            "std_error": coefs["std_error"],
            "df": np.nan,
            "t_value": coefs["t_value"],
            "p_value": np.nan,
        }
    )
    if ddf is None:
        return table
    if not hasattr(model, "coef_table"):
        raise CommandError(_NO_DDF.format(ddf=ddf))
    try:
        inferred = model.coef_table(ddf=ddf)
    except MixedModelsError as err:
        raise CommandError(f"--ddf {ddf}: {err}") from err
    return _normalise_coef_table(inferred, table)


# Spellings of the columns a coefficient table may use, mapped to ours.
_COLUMN_ALIASES = {
    "estimate": ("estimate", "Estimate", "coef", "Coef."),
    "std_error": ("std_error", "Std. Error", "se", "std_err", "SE"),
    "df": ("df", "ddf"),
    "t_value": ("t_value", "t value", "t", "statistic"),
    "p_value": ("p_value", "Pr(>|t|)", "p", "pvalue", "p-value"),
}


def _normalise_coef_table(inferred: pd.DataFrame, base: pd.DataFrame) -> pd.DataFrame:
    out = base.copy()
    for ours, spellings in _COLUMN_ALIASES.items():
        for name in spellings:
            if name in inferred.columns:
                out[ours] = inferred[name].reindex(out.index).to_numpy(dtype=float)
                break
        else:
            if ours in ("df", "p_value"):
                raise CommandError(f"the model's coef_table has no {ours!r} column")
    return out


# -- output ---------------------------------------------------------------------------


def _json_number(value: Any) -> float | int | None:
    """A JSON-safe number: NaN and infinities become null."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def result_document(
    model: LinearMixedModel,
    table: pd.DataFrame,
    *,
    data_name: str,
    ddf: str | None,
    messages: list[str],
) -> dict[str, Any]:
    """The ``--json`` document: fixed effects, variance components, fit statistics."""
    fixed = [
        {
            "term": str(name),
            "estimate": _json_number(row.estimate),
            "std_error": _json_number(row.std_error),
            "df": _json_number(row.df),
            "t_value": _json_number(row.t_value),
            "p_value": _json_number(row.p_value),
        }
        for name, row in table.iterrows()
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
    return {
        "formula": model.design.formula.source,
        "data": data_name,
        "method": "REML" if model.reml else "ML",
        "ddf": ddf,
        "nobs": model.nobs,
        "ngroups": {str(k): int(v) for k, v in model.ngroups.items()},
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
        "warnings": messages,
    }


def _ddf_text(table: pd.DataFrame, ddf: str) -> str:
    """The fixed-effects table with df and p, as lmerTest prints it under the summary."""
    label = {"satterthwaite": "Satterthwaite's", "kenward-roger": "Kenward-Roger's"}[ddf]
    rows = [
        [
            str(name),
            f"{r.estimate:.4g}",
            f"{r.std_error:.4g}",
            f"{r.df:.2f}",
            f"{r.t_value:.3f}",
            _p_text(r.p_value),
        ]
        for name, r in table.iterrows()
    ]
    header = ["", "Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [f"Fixed effects, t-tests using {label} method:"]
    for r in [header, *rows]:
        cells = [r[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)
        ]
        lines.append(" " + " ".join(cells).rstrip())
    return "\n".join(lines)


def _p_text(p: float) -> str:
    if not np.isfinite(p):
        return "NA"
    return "<2e-16" if p < 2e-16 else f"{p:.3g}"


# -- commands -------------------------------------------------------------------------


def _cmd_fit(args: argparse.Namespace, out: io.TextIOBase) -> int:
    if args.ddf is not None and not hasattr(LinearMixedModel, "coef_table"):
        # Say so before a possibly long fit rather than after it.
        raise CommandError(_NO_DDF.format(ddf=args.ddf))
    data, data_name = read_data(args.data)
    model, messages = fit_model(data, args.formula, ml=args.ml, groups=args.groups)
    model.data_name = data_name
    table = fixed_effects_table(model, args.ddf)
    for message in messages:
        print(f"{PROG}: warning: {message}", file=sys.stderr)
    if args.json:
        document = result_document(
            model, table, data_name=data_name, ddf=args.ddf, messages=messages
        )
        out.write(json.dumps(document, indent=2, allow_nan=False) + "\n")
        return 0
    out.write(str(model.summary()) + "\n")
    if args.ddf is not None:
        out.write("\n" + _ddf_text(table, args.ddf) + "\n")
    return 0


def _cmd_datasets(args: argparse.Namespace, out: io.TextIOBase) -> int:
    if args.long:
        out.write(datasets.describe().to_string() + "\n")
    else:
        out.write("\n".join(datasets.names()) + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``mixedmodels`` command."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Linear mixed-effects models with lme4 formulas.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    fit = commands.add_parser(
        "fit",
        help="fit a linear mixed model and print its summary",
        description="Fit a linear mixed model (REML unless --ml) and print lme4's summary.",
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
        help="denominator degrees of freedom for t tests on the fixed effects",
    )
    fit.add_argument(
        "--groups",
        metavar="COL",
        help="add a random intercept (1 | COL), as statsmodels' groups= does",
    )
    fit.add_argument("--json", action="store_true", help="print a JSON document instead")
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
        The arguments (default ``sys.argv[1:]``).
    """
    args = build_parser().parse_args(argv)
    try:
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
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
