#!/usr/bin/env Rscript
## lme4 references for the formula language (issue 14): offsets, arithmetic,
## math and summaries, factors, splines, contrasts, coefficient names, coef().
##
## Writes tests/data/formula/<id>.json (a subset of the schema of
## make_reference.R plus the extra arguments, predictions on new rows and
## coef()) and the data sets they use, gzipped, to tests/data/formula/datasets/.
## Every model is fitted to the data as read back from that CSV, so that R
## and the tests see the same values and the same factor levels.
##
## Usage (from the repository root):
##   Rscript dev/make_formula_reference.R            # all models
##   Rscript dev/make_formula_reference.R --only id1,id2
##
## Needs R with lme4, mlmRev, nlme, splines and jsonlite.

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
  library(splines)
})
invisible(Sys.setlocale("LC_COLLATE", "C"))

OUT <- "tests/data/formula"
DATA_DIR <- file.path(OUT, "datasets")

## ------------------------------------------------------------- data sets --

DATASETS <- list(
  Mmmec = function() {
    d <- mlmRev::Mmmec
    data.frame(nation = as.character(d$nation), region = as.character(d$region),
               deaths = d$deaths, expected = d$expected, uvb = d$uvb,
               log_expected = log(d$expected))
  },
  Ovary = function() {
    d <- nlme::Ovary
    data.frame(Mare = as.character(d$Mare), Time = d$Time, follicles = d$follicles)
  },
  bdf = function() {
    d <- mlmRev::bdf
    data.frame(schoolNR = as.character(d$schoolNR), langPOST = d$langPOST,
               IQ.verb = d$IQ.verb, ses = d$ses, Minority = as.character(d$Minority))
  },
  sleepstudy = function() {
    d <- lme4::sleepstudy
    data.frame(Reaction = d$Reaction, Days = d$Days, Subject = as.character(d$Subject))
  },
  cake = function() {
    d <- lme4::cake
    data.frame(angle = d$angle, recipe = as.character(d$recipe),
               replicate = as.integer(as.character(d$replicate)), temp = d$temp)
  },
  ## 600 rows, 40 groups: factors of 3 and 2 levels, an ordered factor, a
  ## logical, two covariates and an integer-coded group.
  formula_synth = function() {
    set.seed(20241114)
    n <- 600; ng <- 40
    g <- sample.int(ng, n, replace = TRUE)
    a <- sample(c("a1", "a2", "a3"), n, replace = TRUE)
    b <- sample(c("u", "v"), n, replace = TRUE)
    o <- sample(c("low", "mid", "high", "top"), n, replace = TRUE)
    x <- round(rnorm(n), 3)
    u <- round(runif(n, 0, 10), 2)
    flag <- runif(n) < 0.4
    eff_a <- c(a1 = 0, a2 = 0.5, a3 = -0.4)
    eff_o <- c(low = 0, mid = 0.3, high = 0.7, top = 1.4)
    y <- 3 + eff_a[a] + 0.3 * (b == "v") + eff_o[o] + 0.6 * flag + sin(x) + 0.02 * u^2 +
      0.4 * x * flag + rnorm(ng, sd = 0.8)[g] + rnorm(n, sd = 0.7)
    data.frame(y = round(unname(y), 4), x = x, u = u, a = a, b = b, o = o, flag = flag,
               g = sprintf("g%02d", g), gnum = 100 + g, w = sample(1:5, n, replace = TRUE))
  }
)

## Columns that are ordered factors in R (the CSV loses it): name -> levels.
ORDERED <- list(formula_synth = list(o = c("low", "mid", "high", "top")))

read_data <- function(name) {
  d <- read.csv(gzfile(file.path(DATA_DIR, paste0(name, ".csv.gz"))), stringsAsFactors = TRUE)
  for (col in names(ORDERED[[name]])) d[[col]] <- factor(d[[col]], levels = ORDERED[[name]][[col]],
                                                        ordered = TRUE)
  d
}

## ---------------------------------------------------------------- models --

## contrasts: named list of R code (evaluated with the data as `d`), and the
## Python spelling of each; offset: a column given as lme4's offset=;
## newdata: rows of the data to predict, each column changed by `shift`.
## formula_python and groups_python: what the tests fit instead, and the
## names they give R's grouping factors, where lme4 cannot take the formula.
M <- function(id, dataset, formula, REML = TRUE, offset = NULL, contrasts = NULL,
              contrasts_python = NULL, predict_rows = NULL, shift = NULL, coef = FALSE,
              formula_python = NULL, groups_python = NULL) {
  list(id = id, dataset = dataset, formula = formula, REML = REML, offset = offset,
       contrasts = contrasts, contrasts_python = contrasts_python,
       predict_rows = predict_rows, shift = shift, coef = coef,
       formula_python = formula_python, groups_python = groups_python)
}

MODELS <- list(
  ## 1. offsets
  M("mmmec_offset_ml", "Mmmec",
    "log(deaths + 0.5) ~ uvb + offset(log(expected)) + (1 | nation) + (1 | nation:region)",
    REML = FALSE, predict_rows = 1:12),
  M("mmmec_offset_argument_ml", "Mmmec",
    "log(deaths + 0.5) ~ uvb + (1 | nation) + (1 | nation:region)",
    REML = FALSE, offset = "log_expected", predict_rows = 1:12),
  M("mmmec_two_offsets_reml", "Mmmec",
    "log(deaths + 1) ~ uvb + offset(log(expected)) + offset(uvb / 10) + (1 | nation)",
    offset = "uvb", predict_rows = 1:12),
  ## 2. arithmetic, math and summaries
  M("ovary_trig_reml", "Ovary",
    "follicles ~ sin(2 * pi * Time) + cos(2 * pi * Time) + (1 | Mare)", coef = TRUE),
  M("bdf_centred_reml", "bdf",
    "langPOST ~ I(IQ.verb - mean(IQ.verb)) + ses + (1 | schoolNR)"),
  M("sleep_math1_reml", "sleepstudy",
    "Reaction ~ sqrt(Days) + I(Days^2/10) + abs(Days - 4.5) + exp(Days/10) + (1 | Subject)"),
  M("sleep_math2_reml", "sleepstudy",
    "Reaction ~ sinh(Days/10) + atan(Days) + cos(Days) + tanh(Days/5) + (1 | Subject)"),
  M("sleep_math3_reml", "sleepstudy",
    "Reaction ~ tan(Days/10) + asin(Days/10) + cosh(Days/9) + log(Days + 1, base = 2) + (1 | Subject)"),
  M("sleep_rounding_reml", "sleepstudy",
    "Reaction ~ floor(Days/3) + ceiling(Days/4) + trunc(Days/2.5) + round(log(Days + 1), 1) + sign(Days - 4.5) + (1 | Subject)"),
  M("sleep_modulo_reml", "sleepstudy",
    "Reaction ~ I(Days %% 3) + I(Days %/% 4) + pmin(Days, 5) + pmax(Days, 7) + (1 | Subject)"),
  M("sleep_logical_reml", "sleepstudy",
    "Reaction ~ Days + I(Days > 4) + ifelse(Days > 2 & Days < 8, 1, 0) + I(!(Days > 1) & Days != 9) + (1 | Subject)"),
  M("sleep_summaries_reml", "sleepstudy",
    "Reaction ~ I((Days - mean(Days))/sd(Days)) + I(((Days - min(Days))/(max(Days) - min(Days)))^2) + I(sqrt(Days + length(Days)/180) * sum(Days)/var(Days)) + I(abs(Days - median(Days))) + (1 | Subject)"),
  M("synth_names_reml", "formula_synth",
    "y ~ poly(u, 3, raw = TRUE) + I(x/100) + scale(x^2, scale = FALSE) + log(u + 1):b + (1 | g)"),
  M("sleep_slopes_coef_reml", "sleepstudy",
    "Reaction ~ Days + (Days | Subject)", coef = TRUE),
  M("sleep_random_only_coef_reml", "sleepstudy",
    "Reaction ~ 1 + (Days | Subject)", coef = TRUE),
  ## 3. factors and splines
  M("cake_relevel_reml", "cake",
    "angle ~ relevel(recipe, ref = \"B\") + temp + (1 | recipe:replicate)"),
  M("cake_factor_levels_reml", "cake",
    "angle ~ recipe + factor(temp, levels = c(175, 185, 195, 205, 215)) + (1 | recipe:replicate)"),
  ## lme4 1.1-31 cannot evaluate a grouping factor written as an expression
  ## (its model frame holds the expression's value under the expression's
  ## name, not the columns it reads): R fits the same factor made as a column.
  M("cake_grouping_expression_reml", "cake",
    "angle ~ recipe + temp + (1 | recipe_replicate)",
    formula_python = "angle ~ recipe + temp + (1 | interaction(recipe, replicate))",
    groups_python = list(recipe_replicate = "interaction(recipe, replicate)")),
  M("synth_interaction_reml", "formula_synth",
    "y ~ interaction(a, b) + x + (1 | g)"),
  M("synth_cut_reml", "formula_synth",
    "y ~ cut(x, 3) + cut(u, c(0, 2.5, 5, 10)) + (1 | g)"),
  M("synth_as_numeric_reml", "formula_synth",
    "y ~ as.numeric(a) + as.factor(w) + (1 | gnum_factor)",
    formula_python = "y ~ as.numeric(a) + as.factor(w) + (1 | factor(gnum))",
    groups_python = list(gnum_factor = "factor(gnum)")),
  M("synth_logical_reml", "formula_synth",
    "y ~ flag * x + I(x > 0) + (1 | g)", coef = TRUE),
  M("synth_ordered_reml", "formula_synth",
    "y ~ o + x + (1 | g)"),
  M("synth_ns_reml", "formula_synth",
    "y ~ ns(x, 3) + ns(u, df = 4) + (1 | g)", predict_rows = 1:10, shift = list(x = 2.5, u = -1)),
  M("synth_bs_reml", "formula_synth",
    "y ~ bs(x, df = 5) + bs(u, 4, degree = 2) + (1 | g)", predict_rows = 1:10,
    shift = list(x = 0.5)),
  M("synth_ns_knots_ml", "formula_synth",
    "y ~ ns(x, knots = c(-1, 0, 1), Boundary.knots = c(-3, 3)) + bs(u, knots = 5, intercept = FALSE) + (1 | g)",
    REML = FALSE),
  ## 4. contrasts
  M("synth_contr_sum_reml", "formula_synth",
    "y ~ a * x + b + (1 | g)",
    contrasts = list(a = "contr.sum", b = "contr.sum"),
    contrasts_python = list(a = "contr.sum", b = "contr.sum")),
  M("synth_contr_helmert_reml", "formula_synth",
    "y ~ a + o + (1 | g)",
    contrasts = list(a = "contr.helmert", o = "contr.treatment"),
    contrasts_python = list(a = "contr.helmert", o = "contr.treatment")),
  M("synth_contr_poly_base_reml", "formula_synth",
    "y ~ a + b + flag + (1 | g)",
    contrasts = list(a = "contr.poly", b = "contr.treatment(levels(d$b), base = 2)",
                     flag = "contr.SAS"),
    contrasts_python = list(a = "contr.poly", b = "contr.treatment(base = 2)",
                            flag = "contr.SAS")),
  M("synth_C_reml", "formula_synth",
    "y ~ C(a, sum) + C(b, helmert) + (1 | g)"),
  M("synth_ordered_slope_reml", "formula_synth",
    "y ~ x + (0 + o | g)")
)

## ------------------------------------------------------------- helpers --

arr <- function(x) I(unname(as.vector(x)))
mat <- function(x) unname(as.matrix(x))

fit_model <- function(spec, d) {
  f <- as.formula(spec$formula)
  e <- new.env(parent = globalenv())
  e$d <- d
  args <- list(formula = f, data = quote(d), REML = spec$REML)
  if (!is.null(spec$offset)) args$offset <- call("$", quote(d), as.name(spec$offset))
  ## A contrasts name is passed as a string, as lme4 documents it (a function
  ## would be called with the number of levels and name columns by number).
  if (!is.null(spec$contrasts))
    args$contrasts <- lapply(spec$contrasts, function(code)
      if (grepl("^contr\\.[A-Za-z]+$", code)) code else eval(parse(text = code), e))
  notes <- character()
  m <- withCallingHandlers(
    do.call(lme4::lmer, args, envir = e),
    warning = function(w) { notes <<- c(notes, conditionMessage(w)); invokeRestart("muffleWarning") },
    message = function(msg) { notes <<- c(notes, conditionMessage(msg)); invokeRestart("muffleMessage") })
  list(model = m, notes = notes)
}

coef_list <- function(m) {
  cf <- coef(m)
  lapply(names(cf), function(g) {
    r <- cf[[g]]
    k <- min(15L, nrow(r))
    list(group = g, levels = arr(rownames(r)[seq_len(k)]), terms = arr(colnames(r)),
         values = mat(r[seq_len(k), , drop = FALSE]))
  })
}

make_one <- function(spec) {
  d <- read_data(spec$dataset)
  if (spec$dataset == "cake") d$recipe_replicate <- interaction(d$recipe, d$replicate)
  if (spec$dataset == "formula_synth") d$gnum_factor <- factor(d$gnum)
  fit <- fit_model(spec, d)
  m <- fit$model
  sm <- summary(m)$coefficients
  out <- list(
    id = spec$id, dataset_path = file.path("formula", "datasets", paste0(spec$dataset, ".csv.gz")),
    formula = spec$formula, formula_python = spec$formula_python,
    groups_python = spec$groups_python, REML = spec$REML,
    offset = spec$offset, contrasts = spec$contrasts_python,
    ordered = ORDERED[[spec$dataset]],
    nobs = nobs(m), ngroups = as.list(ngrps(m)),
    fixef = as.list(fixef(m)), fixef_names = arr(names(fixef(m))),
    stderr = arr(sm[, "Std. Error"]),
    theta = arr(getME(m, "theta")), theta_names = arr(names(getME(m, "theta"))),
    sigma = sigma(m),
    objective = if (isREML(m)) unname(REMLcrit(m)) else unname(deviance(m)),
    fitted_head = arr(head(fitted(m), 10)),
    resid_head = arr(head(residuals(m), 10)),
    notes = arr(fit$notes),
    lme4_version = as.character(packageVersion("lme4"))
  )
  if (spec$coef) out$coef <- coef_list(m)
  if (!is.null(spec$predict_rows)) {
    nd <- d[spec$predict_rows, , drop = FALSE]
    for (col in names(spec$shift)) nd[[col]] <- nd[[col]] + spec$shift[[col]]
    newdata <- lapply(nd, function(v) if (is.factor(v)) as.character(v) else v)
    out$newdata <- newdata
    p_all <- predict(m, newdata = nd)
    p_fixed <- predict(m, newdata = nd, re.form = NA)
    if (!is.null(spec$offset)) {
      ## lme4 1.1-31's predict() leaves out the offset= argument for new rows
      ## (it only evaluates offset() terms of the formula); the tests expect it
      ## added, as it is to the fitted values.
      p_all <- p_all + nd[[spec$offset]]
      p_fixed <- p_fixed + nd[[spec$offset]]
      out$predict_note <- "lme4's predictions plus the offset= values of the new rows"
    }
    out$predict <- list(all = arr(p_all), fixed = arr(p_fixed))
  }
  js <- toJSON(out, auto_unbox = TRUE, pretty = TRUE, digits = NA, null = "null", na = "string")
  writeLines(js, file.path(OUT, paste0(spec$id, ".json")))
  cat(sprintf("%s: nobs %d, objective %.8f%s\n", spec$id, nobs(m), out$objective,
              if (length(fit$notes)) paste0(" [", paste(fit$notes, collapse = " | "), "]") else ""))
}

## R's update() of formulas: (formula, update) pairs and R's result.
UPDATES <- list(
  c("y ~ x + z + (1 | g)", ". ~ . - z"),
  c("y ~ x * z + (1 | g)", ". ~ . - z"),
  c("y ~ x * z + (1 | g)", ". ~ . - x:z"),
  c("y ~ x + (1 | g)", ". ~ . + w"),
  c("y ~ x + (1 | g)", "log(.) ~ ."),
  c("y ~ x + (1 | g)", ". ~ . - 1"),
  c("y ~ x + (Days | g)", ". ~ . - (Days | g) + (1 | g)"),
  c("y ~ a + b + (1 | g)", ". ~ . + a:b"),
  c("y ~ (a + b + c)^2 + (1|g)", ". ~ . - a:c"),
  c("y ~ x + (1 | g)", "~ . + z"),
  c("y ~ x + offset(log(n)) + (1 | g)", ". ~ . - x"),
  c("y ~ x + I(x^2) + (1 | g)", ". ~ . - I(x^2)"),
  c("y ~ x + (1 | g)", "z ~ ."),
  c("y ~ 0 + x + (1 | g)", ". ~ . + 1"),
  c("y ~ x + (1 | g/h)", ". ~ . + w"),
  c("Reaction ~ Days + (Days | Subject)", ". ~ . - Days"),
  c("y ~ a/b + (1 | g)", ". ~ . - a:b + x"),
  c("y ~ a * b * c + (1 | g)", ". ~ . - a:b:c")
)

write_updates <- function() {
  rows <- lapply(UPDATES, function(u) list(formula = u[1], update = u[2],
    result = paste(deparse(update(as.formula(u[1]), as.formula(u[2]))), collapse = " ")))
  dir.create(file.path(OUT, "update"), showWarnings = FALSE)
  writeLines(toJSON(rows, auto_unbox = TRUE, pretty = TRUE),
             file.path(OUT, "update", "update_formula.json"))
}

main <- function(args) {
  only <- NULL
  i <- match("--only", args)
  if (!is.na(i)) only <- strsplit(args[i + 1], ",")[[1]]
  dir.create(DATA_DIR, recursive = TRUE, showWarnings = FALSE)
  models <- if (is.null(only)) MODELS else Filter(function(s) s$id %in% only, MODELS)
  for (name in unique(vapply(models, `[[`, "", "dataset"))) {
    con <- gzfile(file.path(DATA_DIR, paste0(name, ".csv.gz")), "w")
    write.csv(DATASETS[[name]](), con, row.names = FALSE)
    close(con)
  }
  cat(R.version.string, "| lme4", as.character(packageVersion("lme4")), "\n")
  for (s in models) make_one(s)
  write_updates()
}

main(commandArgs(trailingOnly = TRUE))
