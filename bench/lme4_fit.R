#!/usr/bin/env Rscript
## Time lme4::lmer on one model for the mixedmodels benchmark (bench/run.py).
##
## Usage: Rscript bench/lme4_fit.R --data FILE.csv --formula "y ~ x + (1 | g)"
##          --reml TRUE --factors g,h --repeat 5 --budget 10 --warmup TRUE
##          [--family binomial --weights size]
##
## With --family the model is a GLMM, fitted by glmer() with its defaults
## (Laplace; bobyqa then Nelder-Mead), and its objective is -2 log L.
##
## Speaks the worker protocol of bench/worker.py: one JSON object per line on
## stdout -- {"event": "ready"} once the data are read, then
## {"event": "fit", "seconds": s, "objective": o, "warmup": w,
## "peak_rss_bytes": b} per fit, then
## {"event": "done"}; {"event": "error", "message": m} on failure.
## A fit is timed from formula and data frame to fitted model, like the
## Python engines: lmer() itself, nothing else.

suppressPackageStartupMessages(library(lme4))

## Factor levels in plain byte order, as pandas sorts strings.
invisible(Sys.setlocale("LC_COLLATE", "C"))

args <- commandArgs(trailingOnly = TRUE)
option <- function(name, default = NULL) {
  at <- match(paste0("--", name), args)
  if (is.na(at)) default else args[[at + 1L]]
}

## Peak resident memory of this R process (VmHWM, Linux), or NA elsewhere.
peak_rss_bytes <- function() {
  status <- tryCatch(readLines("/proc/self/status"), error = function(e) character())
  line <- grep("^VmHWM:", status, value = TRUE)
  if (length(line) == 0L) return(NA_real_)
  as.numeric(strsplit(trimws(sub("^VmHWM:", "", line)), "[[:space:]]+")[[1]][1]) * 1024
}

emit <- function(...) {
  fields <- list(...)
  cat(jsonlite::toJSON(fields, auto_unbox = TRUE, digits = NA), "\n", sep = "")
  flush(stdout())
}

main <- function() {
  path <- option("data")
  formula <- as.formula(option("formula"))
  reml <- as.logical(option("reml", "TRUE"))
  factors <- strsplit(option("factors", ""), ",", fixed = TRUE)[[1]]
  repeats <- as.integer(option("repeat", "5"))
  budget <- as.numeric(option("budget", "10"))
  warmup <- as.logical(option("warmup", "TRUE"))
  family <- option("family", "")
  weights <- option("weights", "")

  ## data.table reads 10^7 rows in seconds where read.csv takes minutes.
  data <- if (requireNamespace("data.table", quietly = TRUE)) {
    as.data.frame(data.table::fread(path, showProgress = FALSE))
  } else {
    read.csv(path)
  }
  for (column in factors[nzchar(factors)]) data[[column]] <- factor(data[[column]])
  emit(event = "ready")

  fit_glmer <- function() {
    ## glmer's weights are looked up in the data, as the formula's columns are.
    if (nzchar(weights)) {
      eval(substitute(glmer(formula, data = data, family = family, weights = w),
                      list(w = as.name(weights))))
    } else {
      glmer(formula, data = data, family = family)
    }
  }

  fit_once <- function(is_warmup) {
    start <- proc.time()[["elapsed"]]
    fitted <- if (nzchar(family)) fit_glmer() else lmer(formula, data = data, REML = reml)
    seconds <- proc.time()[["elapsed"]] - start
    objective <- if (nzchar(family)) {
      -2 * as.numeric(logLik(fitted))
    } else if (reml) REMLcrit(fitted) else deviance(fitted)
    emit(event = "fit", seconds = seconds, objective = objective, warmup = is_warmup,
         peak_rss_bytes = peak_rss_bytes())
    seconds
  }

  first <- if (warmup) fit_once(TRUE) else 0
  ## As many timed fits as fit in the budget, at least one.
  timed <- if (first > 0) max(1L, min(repeats, floor(budget / first))) else repeats
  for (i in seq_len(timed)) fit_once(FALSE)
  emit(event = "done")
}

tryCatch(main(), error = function(e) {
  emit(event = "error", message = conditionMessage(e))
  quit(status = 1)
})
