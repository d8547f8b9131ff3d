#!/usr/bin/env Rscript
## lmerTest's printed summaries of reference models, for the side-by-side test
## of the package's text summary (tests/test_summary_lme4.py).
##
## Usage (from the repository root):
##   Rscript dev/make_summary_reference.R [--datasets DIR] [--out DIR]
##
## Writes DIR/<id>.json (default tests/data/summaries): the model (dataset,
## formula, REML), `text` = print(summary(fit)) of lmerTest's lmer (Satterthwaite
## t tests) at width 80 with ASCII quotes, and for some models `text_kr`, the
## summary with Kenward-Roger's df (summary(fit, ddf = "Kenward-Roger")).
suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
  library(jsonlite)
})
invisible(Sys.setlocale("LC_COLLATE", "C"))
options(width = 80, useFancyQuotes = FALSE, digits = 7)

args <- commandArgs(trailingOnly = TRUE)
opt <- function(name, default) {
  i <- match(name, args)
  if (is.na(i)) default else args[[i + 1]]
}
datasets <- opt("--datasets", "/work/shared/reference/datasets")
out <- opt("--out", "tests/data/summaries")
dir.create(out, showWarnings = FALSE, recursive = TRUE)

M <- function(id, dataset, formula, REML, kr = FALSE)
  list(id = id, dataset = dataset, formula = formula, REML = REML, kr = kr)

MODELS <- list(
  M("sleepstudy_slope_reml", "sleepstudy", "Reaction ~ Days + (Days | Subject)", TRUE, kr = TRUE),
  M("sleepstudy_slope_ml", "sleepstudy", "Reaction ~ Days + (Days | Subject)", FALSE),
  M("sleepstudy_uncorr_reml", "sleepstudy", "Reaction ~ Days + (Days || Subject)", TRUE),
  M("dyestuff_reml", "Dyestuff", "Yield ~ 1 + (1 | Batch)", TRUE),
  M("dyestuff2_singular_reml", "Dyestuff2", "Yield ~ 1 + (1 | Batch)", TRUE),
  M("penicillin_crossed_reml", "Penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", TRUE),
  M("pastes_nested_reml", "Pastes", "strength ~ 1 + (1 | batch/cask)", TRUE),
  M("orthodont_slope_reml", "Orthodont", "distance ~ age * Sex + (age | Subject)", TRUE, kr = TRUE),
  M("machines_nested_reml", "Machines", "score ~ Machine + (1 | Worker) + (1 | Worker:Machine)", TRUE),
  M("exam_slope_ml", "Exam", "normexam ~ standLRT + sex + (standLRT | school)", FALSE),
  M("cake_interaction_factor_reml", "cake",
    "angle ~ recipe * factor(temp) + (1 | recipe:replicate)", TRUE),
  M("scotssec_crossed_reml", "ScotsSec", "attain ~ verbal + sex + (1 | primary) + (1 | second)", TRUE)
)

grouping_vars <- function(f) {
  out <- character()
  walk <- function(e) {
    if (is.call(e)) {
      if (as.character(e[[1]]) %in% c("|", "||")) out <<- c(out, all.vars(e[[3]]))
      for (a in as.list(e)[-1]) walk(a)
    }
  }
  walk(f[[3]])
  unique(out)
}

## What print() writes to stdout and as messages (the note on the correlation
## block is a message), in the order written.
printed <- function(x) {
  lines <- character()
  zz <- textConnection("lines", "w", local = TRUE)
  sink(zz); sink(zz, type = "message")
  on.exit({ sink(type = "message"); sink(); close(zz) })
  print(x)
  sink(type = "message"); sink(); close(zz)
  on.exit()
  lines
}

read_data <- function(name, gvars) {
  path <- file.path(datasets, paste0(name, ".csv"))
  d <- read.csv(path, stringsAsFactors = TRUE)
  raw <- read.csv(path, colClasses = "character")
  for (v in gvars) if (!is.factor(d[[v]])) d[[v]] <- factor(raw[[v]])
  d
}

for (m in MODELS) {
  f <- as.formula(m$formula)
  d <- read_data(m$dataset, grouping_vars(f))
  e <- new.env(parent = globalenv())
  environment(f) <- e
  e$f <- f; e$d <- d; e$REML <- m$REML
  fit <- suppressMessages(suppressWarnings(
    eval(quote(lmerTest::lmer(f, data = d, REML = REML)), e)))
  ## The printed call names the formula and the data set, not the local names.
  fit@call$formula <- as.formula(m$formula)
  fit@call$data <- as.name(m$dataset)
  rec <- list(id = m$id, dataset = m$dataset, formula = m$formula, REML = m$REML,
              r_version = R.version.string,
              lme4 = as.character(packageVersion("lme4")),
              lmerTest = as.character(packageVersion("lmerTest")),
              text = printed(summary(fit)))
  if (m$kr) rec$text_kr <- printed(summary(fit, ddf = "Kenward-Roger"))
  writeLines(toJSON(rec, auto_unbox = TRUE, pretty = TRUE, digits = NA),
             file.path(out, paste0(m$id, ".json")))
  cat(m$id, "\n")
}

## anova tables: lme4's likelihood-ratio test of two sleepstudy models (named
## m0, m1 as the package's keywords would) and lmerTest's type III table.
d <- read_data("sleepstudy", "Subject")
sleepstudy <- d
m0 <- lme4::lmer(Reaction ~ Days + (1 | Subject), sleepstudy)
m1 <- lme4::lmer(Reaction ~ Days + (Days | Subject), sleepstudy)
lrt <- list(id = "anova_lrt_sleepstudy", text = printed(anova(m0, m1)))
writeLines(toJSON(lrt, auto_unbox = TRUE, pretty = TRUE), file.path(out, "anova_lrt_sleepstudy.json"))
cake <- read_data("cake", c("recipe", "replicate"))
fit <- lmerTest::lmer(angle ~ recipe * temp + (1 | recipe:replicate), cake)
f3 <- list(id = "anova_type3_cake", text = printed(anova(fit)))
writeLines(toJSON(f3, auto_unbox = TRUE, pretty = TRUE), file.path(out, "anova_type3_cake.json"))
