## Reference results for tests/inference/test_type3.py: lmerTest's type III F tests
## (anova(m, type = 3), Satterthwaite denominator df) for models whose terms
## are contained in interactions, where type III differs from testing the
## coefficients as coded.
## Run from the repository root:  Rscript dev/make_anova_reference.R
suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
  loadNamespace("lmerTest")
})
invisible(Sys.setlocale("LC_COLLATE", "C"))
DATA <- "/work/shared/reference/datasets"
OUT <- "tests/data/anova"
dir.create(OUT, showWarnings = FALSE, recursive = TRUE)

## As mm.datasets.load: strings become factors, and the listed grouping
## columns are factors even when their values look numeric.
read_data <- function(name, gvars) {
  path <- file.path(DATA, paste0(name, ".csv"))
  d <- read.csv(path, stringsAsFactors = TRUE)
  raw <- read.csv(path, colClasses = "character")
  for (v in gvars) if (!is.factor(d[[v]])) d[[v]] <- factor(raw[[v]])
  d
}

## A made-up factor: level letters[(integer value of `from`) %% k + 1].
## tests/conftest.py (reference_data) derives the same column from the "derived" entry.
derive <- function(d, spec) {
  if (is.null(spec)) return(d)
  codes <- as.integer(as.character(d[[spec$from]])) %% spec$modulo
  d[[spec$name]] <- factor(letters[codes + 1L])
  d
}

## Rows left out to make empty cells: every listed column equals its value.
exclude <- function(d, spec) {
  if (is.null(spec)) return(d)
  drop <- Reduce(`&`, lapply(names(spec), function(v) as.character(d[[v]]) == as.character(spec[[v]])))
  d[!drop, , drop = FALSE]
}

fit <- function(formula, d, REML) {
  e <- new.env(parent = globalenv())
  f <- as.formula(formula)
  environment(f) <- e
  e$f <- f; e$d <- d; e$REML <- REML
  suppressMessages(suppressWarnings(
    eval(quote(lme4::lmer(f, data = d, REML = REML)), e)))
}

MODELS <- list(
  list(id = "cake_recipe_x_temp", dataset = "cake", gvars = c("recipe", "replicate"),
       formula = "angle ~ recipe * temp + (1 | recipe:replicate)", REML = TRUE),
  list(id = "cake_recipe_x_factor_temp", dataset = "cake", gvars = c("recipe", "replicate"),
       formula = "angle ~ recipe * factor(temp) + (1 | recipe:replicate)", REML = TRUE),
  list(id = "dietox_time_evit_cu_slope", dataset = "dietox", gvars = c("Pig", "Evit", "Cu", "Litter"),
       formula = "Weight ~ Time * Evit * Cu + (Time | Pig)", REML = TRUE),
  list(id = "exam_lrt_x_sex_ml", dataset = "Exam", gvars = c("school", "student"),
       formula = "normexam ~ standLRT * sex + (1 | school)", REML = FALSE),
  list(id = "exam_vr_sex_intake", dataset = "Exam", gvars = c("school", "student"),
       formula = "normexam ~ vr * sex * intake + (1 | school)", REML = TRUE),
  list(id = "exam_schgend_x_vr_ml", dataset = "Exam", gvars = c("school", "student"),
       formula = "normexam ~ schgend * vr + standLRT + (1 | school)", REML = FALSE),
  list(id = "sleepstudy_quadratic_x_group", dataset = "sleepstudy", gvars = "Subject",
       formula = "Reaction ~ (Days + I(Days^2)) * grp + (Days | Subject)", REML = TRUE,
       derived = list(name = "grp", from = "Subject", modulo = 3L)),
  ## lmerTest treats poly()'s two columns as a non-numeric variable, so grp
  ## is contained in poly(Days, 2):grp here but not in Days:grp above.
  list(id = "sleepstudy_poly_x_group_ml", dataset = "sleepstudy", gvars = "Subject",
       formula = "Reaction ~ poly(Days, 2) * grp + (1 | Subject)", REML = FALSE,
       derived = list(name = "grp", from = "Subject", modulo = 3L)),
  ## Empty cells: lme4 drops aliased columns, lmerTest builds "type III-like"
  ## hypotheses from the cells that have data.
  list(id = "exam_sex_x_schgend_empty_cells", dataset = "Exam", gvars = c("school", "student"),
       formula = "normexam ~ sex * schgend + (1 | school)", REML = TRUE),
  list(id = "cake_recipe_x_factor_temp_empty_cell", dataset = "cake", gvars = c("recipe", "replicate"),
       formula = "angle ~ recipe * factor(temp) + (1 | recipe:replicate)", REML = TRUE,
       exclude = list(recipe = "C", temp = 225L)),
  ## R names grp:I(Days^2) by the variables' order in the formula.
  list(id = "sleepstudy_quadratic_within_group", dataset = "sleepstudy", gvars = "Subject",
       formula = "Reaction ~ grp + Days + grp:Days + I(Days^2):grp + (1 | Subject)", REML = TRUE,
       derived = list(name = "grp", from = "Subject", modulo = 3L)),
  ## Integer-coded factor (dept) next to 0/1 and integer covariates; 73421
  ## rows, so its test is marked slow.
  list(id = "insteval_service_x_dept", dataset = "InstEval", gvars = c("s", "d", "dept"),
       formula = "y ~ service * dept + studage + lectage + (1 | s) + (1 | d)", REML = TRUE,
       slow = TRUE),
  list(id = "orthodont_age_x_sex_ml", dataset = "Orthodont", gvars = "Subject",
       formula = "distance ~ age * Sex + (age | Subject)", REML = FALSE),
  list(id = "scotssec_verbal_sex_social", dataset = "ScotsSec", gvars = c("primary", "second"),
       formula = "attain ~ verbal * sex * factor(social) + (1 | primary)", REML = TRUE)
)

for (a in MODELS) {
  d <- exclude(derive(read_data(a$dataset, a$gvars), a$derived), a$exclude)
  m <- fit(a$formula, d, a$REML)
  mt <- suppressMessages(suppressWarnings(lmerTest::as_lmerModLmerTest(m)))
  tab <- anova(mt, type = 3, ddf = "Satterthwaite")
  out <- list(
    id = a$id, dataset = a$dataset, formula = a$formula, REML = a$REML,
    lme4 = as.character(packageVersion("lme4")),
    lmerTest = as.character(packageVersion("lmerTest")),
    fixef_names = I(names(fixef(m))),
    terms = I(rownames(tab)),
    sum_sq = I(tab[["Sum Sq"]]), mean_sq = I(tab[["Mean Sq"]]),
    num_df = I(tab[["NumDF"]]), den_df = I(tab[["DenDF"]]),
    f_value = I(tab[["F value"]]), p = I(tab[["Pr(>F)"]]),
    theta = I(unname(getME(m, "theta"))), sigma = sigma(m)
  )
  if (!is.null(a$derived)) out$derived <- a$derived
  if (!is.null(a$exclude)) out$exclude <- a$exclude
  if (isTRUE(a$slow)) out$slow <- TRUE
  writeLines(toJSON(out, auto_unbox = TRUE, pretty = TRUE, digits = NA, na = "string"),
             file.path(OUT, paste0(a$id, ".json")))
  cat(a$id, "\n")
  print(tab)
}
