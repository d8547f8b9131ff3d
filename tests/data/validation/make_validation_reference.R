#!/usr/bin/env Rscript
## lme4's answers for the input-handling tests in tests/models/test_robustness.py.
##
## Each case modifies sleepstudy in a way the Python test repeats exactly
## (row numbers here are 1-based; the test subtracts 1).
## Usage, from the repository root:
##   Rscript tests/data/validation/make_validation_reference.R
suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})
invisible(Sys.setlocale("LC_COLLATE", "C"))

out_dir <- "tests/data/validation"
base <- read.csv("/work/shared/reference/datasets/sleepstudy.csv")
base$Subject <- factor(base$Subject)

with_missing <- function(d) {
  d$Reaction[c(2, 40, 41, 100)] <- NA
  d$Days2 <- d$Days
  d$Days2[c(5, 77)] <- NA
  d
}

with_phase <- function(d) {
  d <- with_missing(d)
  ## "rest" occurs only in rows whose response is missing: lme4 drops the level.
  d$phase <- ifelse(d$Days < 5, "early", "late")
  d$phase[c(2, 40)] <- "rest"
  d
}

CASES <- list(
  list(id = "na_scale", formula = "Reaction ~ scale(Days2) + (1 | Subject)",
       REML = TRUE, make = with_missing),
  list(id = "nan_transform", formula = "Reaction ~ sqrt(Days - 2.5) + (1 | Subject)",
       REML = FALSE, make = identity),
  list(id = "na_unused_level", formula = "Reaction ~ Days2 + phase + (Days2 | Subject)",
       REML = TRUE, make = with_phase),
  list(id = "weights", formula = "Reaction ~ Days + (Days | Subject)",
       REML = TRUE, make = function(d) { d$w <- 1 + (d$Days %% 3) / 2; d },
       weights = "w"),
  list(id = "weights_ml", formula = "Reaction ~ Days + (1 | Subject)",
       REML = FALSE, make = function(d) { d$w <- 1 + (d$Days %% 3) / 2; d },
       weights = "w")
)

for (case in CASES) {
  d <- case$make(base)
  args <- list(formula = as.formula(case$formula), data = d, REML = case$REML)
  if (!is.null(case$weights)) args$weights <- d[[case$weights]]
  fit <- suppressWarnings(do.call(lmer, args))
  res <- list(
    id = case$id, formula = case$formula, REML = case$REML,
    weights = if (is.null(case$weights)) NULL else case$weights,
    nobs = nobs(fit),
    fixef_names = names(fixef(fit)), fixef = unname(fixef(fit)),
    stderr = unname(sqrt(diag(as.matrix(vcov(fit))))),
    theta = unname(getME(fit, "theta")), sigma = sigma(fit),
    objective = if (case$REML) REMLcrit(fit) else deviance(fit),
    lme4_version = as.character(packageVersion("lme4"))
  )
  write_json(res, file.path(out_dir, paste0(case$id, ".json")),
             auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null")
}
