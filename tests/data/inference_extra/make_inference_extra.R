## Reference results for tests/inference/test_inference.py beyond tests/data/inference:
## lmerTest's anova(m) (Satterthwaite F tests, type III) and lme4's profile
## and Wald intervals and conditional variances for more models.
## Run from the repository root:  Rscript tests/data/inference_extra/make_inference_extra.R
suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
  loadNamespace("lmerTest")
})
invisible(Sys.setlocale("LC_COLLATE", "C"))
DATA <- "/work/shared/reference/datasets"
OUT <- "tests/data/inference_extra"

read_data <- function(name, gvars) {
  path <- file.path(DATA, paste0(name, ".csv"))
  d <- read.csv(path, stringsAsFactors = TRUE)
  raw <- read.csv(path, colClasses = "character")
  for (v in gvars) if (!is.factor(d[[v]])) d[[v]] <- factor(raw[[v]])
  d
}

fit <- function(formula, d, REML = TRUE) {
  e <- new.env(parent = globalenv())
  f <- as.formula(formula)
  environment(f) <- e
  e$f <- f; e$d <- d; e$REML <- REML
  suppressMessages(suppressWarnings(
    eval(quote(lme4::lmer(f, data = d, REML = REML)), e)))
}

write <- function(x, id) {
  writeLines(toJSON(x, auto_unbox = TRUE, pretty = TRUE, digits = NA, na = "string"),
             file.path(OUT, paste0(id, ".json")))
}

## anova(m): lmerTest type III F tests with Satterthwaite df
ANOVA <- list(
  list("anova_sleepstudy_quadratic", "sleepstudy", "Reaction ~ Days + I(Days^2) + (Days | Subject)", "Subject", TRUE),
  list("anova_machines", "Machines", "score ~ Machine + (1 | Worker) + (1 | Worker:Machine)", c("Worker"), TRUE),
  list("anova_synth_crossed3_ml", "synth_crossed3", "y ~ trt + x + (1 | a) + (1 | b) + (1 | c)", c("a", "b", "c"), FALSE),
  list("anova_dietox_evit_cu", "dietox", "Weight ~ Time + Evit + Cu + (Time | Pig)", "Pig", TRUE),
  ## interactions: terms contained in an interaction with a factor are where
  ## type III differs from a test of the coefficients as coded
  list("anova_cake_interaction", "cake", "angle ~ recipe * temp + (1 | recipe:replicate)", c("recipe", "replicate"), TRUE),
  list("anova_orthodont_interaction", "Orthodont", "distance ~ age * Sex + (age | Subject)", "Subject", TRUE)
)
for (a in ANOVA) {
  d <- if (a[[2]] == "synth_crossed3") {
    x <- read.csv("tests/data/extra/datasets/synth_crossed3.csv", stringsAsFactors = TRUE); x
  } else read_data(a[[2]], a[[4]])
  m <- fit(a[[3]], d, a[[5]])
  mt <- suppressMessages(suppressWarnings(lmerTest::as_lmerModLmerTest(m)))
  tab <- anova(mt, type = 3, ddf = "Satterthwaite")
  out <- list(id = a[[1]], dataset = a[[2]], formula = a[[3]], REML = a[[5]],
              terms = I(rownames(tab)), num_df = I(tab[["NumDF"]]), den_df = I(tab[["DenDF"]]),
              f_value = I(tab[["F value"]]), p = I(tab[["Pr(>F)"]]))
  if (!is.null(attr(d, "path"))) out$dataset_path <- attr(d, "path")
  if (a[[2]] == "synth_crossed3") out$dataset_path <- "extra/datasets/synth_crossed3.csv"
  write(out, a[[1]])
  cat(a[[1]], "\n")
}

## profile and Wald intervals, conditional variances
CI <- list(
  list("ci_pastes_nested", "Pastes", "strength ~ 1 + (1 | batch/cask)", c("batch", "cask"), TRUE),
  list("ci_orthodont_slope_ml", "Orthodont", "distance ~ age + Sex + (age | Subject)", "Subject", FALSE),
  list("ci_dyestuff2_singular", "Dyestuff2", "Yield ~ 1 + (1 | Batch)", "Batch", TRUE)
)
for (a in CI) {
  d <- read_data(a[[2]], a[[4]])
  m <- fit(a[[3]], d, a[[5]])
  pr <- suppressWarnings(confint(m, method = "profile", oldNames = FALSE))
  wa <- confint(m, method = "Wald", oldNames = FALSE)
  re <- ranef(m, condVar = TRUE)
  g <- names(re)[1]
  pv <- attr(re[[g]], "postVar")
  k <- min(10L, dim(pv)[3])
  out <- list(id = sub("^ci_", "", a[[1]]), dataset = a[[2]], formula = a[[3]], REML = a[[5]],
              profile = list(names = I(rownames(pr)), lower = I(unname(pr[, 1])), upper = I(unname(pr[, 2]))),
              wald = list(names = I(rownames(wa)), lower = I(unname(wa[, 1])), upper = I(unname(wa[, 2]))),
              condvar = list(group = g, levels = I(rownames(re[[g]])[seq_len(k)]),
                             postvar = lapply(seq_len(k), function(i) unname(pv[, , i, drop = TRUE]))))
  write(out, a[[1]])
  cat(a[[1]], "\n")
}
