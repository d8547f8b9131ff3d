#!/usr/bin/env Rscript
## Make extra lme4 reference results for mixedmodels' tests.
##
## Writes one JSON per model in the schema of the shared reference files
## (see dev/README.md), plus the CSVs of the synthetic data sets it makes.
##
## Usage (from the repository root):
##   Rscript dev/make_reference.R                      # all models
##   Rscript dev/make_reference.R --only id1,id2       # some models
##   Rscript dev/make_reference.R --out DIR --datasets DIR
##
## Options:
##   --out DIR       where the JSON files go (default tests/data/extra);
##                   synthetic CSVs go to DIR/datasets/
##   --datasets DIR  where <name>.csv (or <name>.csv.gz) of the named data
##                   sets are (default: /work/shared/reference/datasets if it
##                   exists, else src/mixedmodels/data)
##   --only IDS      comma-separated model ids
##   --list          print the model ids and exit
##   --from-json DIR take the models (id, dataset, formula, REML) from the
##                   JSON files in DIR instead of the list below: a check
##                   that this R setup reproduces existing reference files
##   --models FILE   take the models from a JSON list of {id, dataset,
##                   dataset_path, formula, REML}, the data read from
##                   tests/data/<dataset_path> (made elsewhere, e.g. by
##                   dev/make_boundary_data.py)
##
## Needs R with lme4, lmerTest, pbkrtest and jsonlite (Debian: r-cran-lme4
## r-cran-lmertest r-cran-pbkrtest r-cran-jsonlite).

## lmerTest is loaded, not attached: attached, its lmer() would mask
## lme4::lmer() and add its own work to every fit and timing.
suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
  for (p in c("lmerTest", "pbkrtest")) loadNamespace(p)
})

## Factor levels in plain byte order, as pandas sorts strings.
invisible(Sys.setlocale("LC_COLLATE", "C"))

## ---------------------------------------------------------------- models --

## Each model: id, dataset (a name), formula (as given to lmer), REML.
## Optional: formula_python (only when the R formula is not lme4 syntax the
## project's parser reads; none needs it now: factor(x) and I(x^2) are read),
## synthetic = TRUE for data made here.
M <- function(id, dataset, formula, REML, formula_python = NULL,
              synthetic = FALSE, dataset_path = NULL) {
  list(id = id, dataset = dataset, formula = formula, REML = REML,
       formula_python = formula_python, synthetic = synthetic,
       dataset_path = dataset_path)
}

MODELS <- list(
  ## sleepstudy: random-effect structures and transforms in the fixed part
  M("sleepstudy_slope_only_reml", "sleepstudy",
    "Reaction ~ Days + (0 + Days | Subject)", TRUE),
  M("sleepstudy_int_plus_slope_reml", "sleepstudy",
    "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", TRUE),
  M("sleepstudy_quadratic_reml", "sleepstudy",
    "Reaction ~ Days + I(Days^2) + (Days | Subject)", TRUE),
  M("sleepstudy_log_ml", "sleepstudy",
    "Reaction ~ log(Days + 1) + (1 | Subject)", FALSE),
  M("sleepstudy_poly_reml", "sleepstudy",
    "Reaction ~ poly(Days, 2) + (Days | Subject)", TRUE),
  M("sleepstudy_no_intercept_reml", "sleepstudy",
    "Reaction ~ 0 + Days + (Days | Subject)", TRUE),
  M("sleepstudy_rankdef_reml", "sleepstudy",
    "Reaction ~ Days + I(2 * Days) + (1 | Subject)", TRUE),
  ## ML versions of crossed and nested designs
  M("penicillin_crossed_ml", "Penicillin",
    "diameter ~ 1 + (1 | plate) + (1 | sample)", FALSE),
  M("pastes_nested_ml", "Pastes",
    "strength ~ 1 + (1 | batch/cask)", FALSE),
  M("scotssec_crossed_ml", "ScotsSec",
    "attain ~ verbal + sex + (1 | primary) + (1 | second)", FALSE),
  ## factors on the left of the bar, interaction grouping factors
  M("machines_machine_in_worker_reml", "Machines",
    "score ~ Machine + (0 + Machine | Worker)", TRUE),
  M("machines_machine_slope_reml", "Machines",
    "score ~ Machine + (Machine | Worker)", TRUE),
  M("machines_interaction_only_reml", "Machines",
    "score ~ Machine + (1 | Worker:Machine)", TRUE),
  M("machines_cell_means_ml", "Machines",
    "score ~ -1 + Machine + (1 | Worker) + (1 | Worker:Machine)", FALSE),
  ## uncorrelated slopes, ML
  M("orthodont_uncorr_ml", "Orthodont",
    "distance ~ age * Sex + (age || Subject)", FALSE),
  ## Exam: quadratic term and interactions (schgend x sex is rank deficient:
  ## boys' schools have no girls and girls' schools no boys)
  M("exam_quadratic_reml", "Exam",
    "normexam ~ standLRT + I(standLRT^2) + sex * vr + (1 | school)", TRUE),
  M("exam_schgend_rankdef_ml", "Exam",
    "normexam ~ standLRT + I(standLRT^2) + sex * schgend + (1 | school)", FALSE),
  ## egsingle: children in schools, ML
  M("egsingle_intercepts_ml", "egsingle",
    "math ~ year + female + (1 | childid) + (1 | schoolid)", FALSE),
  ## cake: temperature as a factor
  M("cake_temp_factor_reml", "cake",
    "angle ~ recipe + factor(temp) + (1 | recipe:replicate)", TRUE),
  ## students: three-level nesting written with /
  M("students_three_level_reml", "students",
    "test_score ~ age + sex + (1 | province/school/classroom)", TRUE),
  ## dietox: growth curves
  M("dietox_quadratic_reml", "dietox",
    "Weight ~ Time + I(Time^2) + (Time | Pig)", TRUE),
  M("dietox_evit_cu_reml", "dietox",
    "Weight ~ Time + Evit + Cu + (Time | Pig)", TRUE),
  ## synthetic data made below
  M("synth_crossed_slopes_reml", "synth_crossed_slopes",
    "y ~ x + (x | g1) + (1 | g2)", TRUE, synthetic = TRUE),
  M("synth_crossed3_reml", "synth_crossed3",
    "y ~ trt + x + (1 | a) + (1 | b) + (1 | c)", TRUE, synthetic = TRUE),
  M("synth_singular_reml", "synth_singular",
    "y ~ x + (x | grp)", TRUE, synthetic = TRUE)
)

## ------------------------------------------------------ synthetic data --

lbl <- function(prefix, i, width) sprintf(paste0("%s%0", width, "d"), prefix, i)

SYNTHETIC <- list(
  ## 3000 rows: 200 subjects (15 rows each) crossed with 50 items drawn at
  ## random; correlated random intercept and slope on g1, intercept on g2.
  synth_crossed_slopes = function() {
    set.seed(20240501)
    n1 <- 200; n2 <- 50; per <- 15; n <- n1 * per
    g1 <- rep(seq_len(n1), each = per)
    g2 <- sample.int(n2, n, replace = TRUE)
    x <- round(runif(n, -2, 2), 3)
    L <- chol(matrix(c(1, 0.3 * 0.4, 0.3 * 0.4, 0.16), 2))
    b1 <- matrix(rnorm(2 * n1), n1) %*% L
    b2 <- rnorm(n2, sd = 0.7)
    y <- 2 + 0.5 * x + b1[g1, 1] + b1[g1, 2] * x + b2[g2] + rnorm(n)
    data.frame(y = round(y, 4), x = x,
               g1 = lbl("s", g1, 3), g2 = lbl("i", g2, 2))
  },
  ## 1200 rows, three crossed grouping factors (24, 15 and 8 levels) drawn
  ## independently, a 3-level fixed factor and a covariate.
  synth_crossed3 = function() {
    set.seed(20240502)
    n <- 1200
    a <- sample.int(24, n, replace = TRUE)
    b <- sample.int(15, n, replace = TRUE)
    c <- sample.int(8, n, replace = TRUE)
    trt <- sample(c("ctl", "dose1", "dose2"), n, replace = TRUE)
    x <- round(rnorm(n), 3)
    eff <- c(ctl = 0, dose1 = 0.4, dose2 = 0.9)
    y <- 10 + eff[trt] - 0.3 * x + rnorm(24, sd = 1.2)[a] +
      rnorm(15, sd = 0.6)[b] + rnorm(8, sd = 0.9)[c] + rnorm(n, sd = 1.5)
    data.frame(y = round(unname(y), 4), x = x, trt = trt,
               a = lbl("a", a, 2), b = lbl("b", b, 2), c = lbl("c", c, 1))
  },
  ## 240 rows, 24 groups of 10; the data have a random intercept but no
  ## random slope, so (x | grp) lands on the boundary.
  synth_singular = function() {
    set.seed(20240503)
    ng <- 24; per <- 10; n <- ng * per
    grp <- rep(seq_len(ng), each = per)
    x <- round(rep(seq(0, 9), ng) + runif(n, -0.3, 0.3), 2)
    y <- 5 + 0.2 * x + rnorm(ng, sd = 0.8)[grp] + rnorm(n, sd = 1)
    data.frame(y = round(y, 4), x = x, grp = lbl("g", grp, 2))
  }
)

## ------------------------------------------------------------- helpers --

grouping_vars <- function(f) {
  ## variables to the right of every | or || in the formula
  out <- character()
  walk <- function(e) {
    if (is.call(e)) {
      op <- as.character(e[[1]])
      if (op %in% c("|", "||")) out <<- c(out, all.vars(e[[3]]))
      for (a in as.list(e)[-1]) walk(a)
    }
  }
  walk(f[[3]])
  unique(out)
}

read_data <- function(path, gvars) {
  d <- read.csv(path, stringsAsFactors = TRUE)
  raw <- NULL
  for (v in gvars) {
    if (!is.factor(d[[v]])) {
      ## numeric-looking labels: make the factor from the text as written,
      ## levels in byte order (e.g. "1", "10", "11", ..., "2")
      if (is.null(raw)) raw <- read.csv(path, colClasses = "character")
      d[[v]] <- factor(raw[[v]])
    }
  }
  d
}

dataset_file <- function(dir, name) {
  for (p in file.path(dir, paste0(name, c(".csv", ".csv.gz"))))
    if (file.exists(p)) return(p)
  stop("dataset ", name, " not found in ", dir)
}

OPTIMIZERS <- c("nloptwrap", "bobyqa", "Nelder_Mead")

fit_with <- function(f, d, REML, opt) {
  ## evaluate in an environment holding everything the call names, so that
  ## lmerTest can re-evaluate getCall(m) (it needs the deviance function)
  e <- new.env(parent = globalenv())
  environment(f) <- e
  e$f <- f; e$d <- d; e$REML <- REML; e$opt <- opt
  notes <- character()
  m <- withCallingHandlers(
    eval(quote(lme4::lmer(f, data = d, REML = REML,
                    control = lmerControl(optimizer = opt))), e),
    warning = function(w) {
      notes <<- c(notes, paste("warning:", conditionMessage(w)))
      invokeRestart("muffleWarning")
    },
    message = function(msg) {
      notes <<- c(notes, paste("message:", trimws(conditionMessage(msg))))
      invokeRestart("muffleMessage")
    })
  list(model = m, notes = notes)
}

objective_of <- function(m) {
  if (isREML(m)) unname(REMLcrit(m)) else unname(deviance(m))
}

time_fit <- function(f, d, REML) {
  ## wall time of lme4::lmer() with its default settings (nloptwrap),
  ## formula to fitted model; median of several runs after a warm-up run
  ## (R's first calls are slower: byte compiling, method caches)
  one <- function() {
    t0 <- proc.time()[["elapsed"]]
    suppressMessages(suppressWarnings(lme4::lmer(f, data = d, REML = REML)))
    proc.time()[["elapsed"]] - t0
  }
  first <- one()
  reps <- if (first < 0.5) 11 else if (first < 5) 5 else 3
  median(vapply(seq_len(reps), function(i) one(), numeric(1)))
}

arr <- function(x) I(unname(as.vector(x)))      # always a JSON array
mat <- function(x) unname(as.matrix(x))

varcorr_list <- function(m) {
  vc <- VarCorr(m)
  lapply(seq_along(vc), function(i) {
    v <- vc[[i]]
    sd <- attr(v, "stddev")
    list(group = names(vc)[i],
         terms = arr(colnames(v)),
         sd = arr(sd),
         corr = if (length(sd) > 1) mat(attr(v, "correlation")) else NULL)
  })
}

ranef_list <- function(m) {
  re <- ranef(m)
  lapply(names(re), function(g) {
    r <- re[[g]]
    k <- min(25L, nrow(r))
    list(group = g,
         levels = arr(rownames(r)[seq_len(k)]),
         terms = arr(colnames(r)),
         values = mat(r[seq_len(k), , drop = FALSE]),
         n_levels = nrow(r))
  })
}

ddf_tables <- function(m, do_kr) {
  ## (re-evaluating the call repeats the fit's own warnings and messages)
  mt <- suppressMessages(suppressWarnings(lmerTest::as_lmerModLmerTest(m)))
  s <- summary(mt, ddf = "Satterthwaite")$coefficients
  sat <- list(df = arr(s[, "df"]), p = arr(s[, "Pr(>|t|)"]))
  kr <- NULL
  if (do_kr) {
    k <- summary(mt, ddf = "Kenward-Roger")$coefficients
    kr <- list(df = arr(k[, "df"]), p = arr(k[, "Pr(>|t|)"]),
               se = arr(k[, "Std. Error"]))
  }
  list(sat = sat, kr = kr)
}

## ---------------------------------------------------------------- main --

make_one <- function(spec, datasets_dir, out_dir) {
  f <- as.formula(spec$formula)
  if (!is.null(spec$dataset_path)) {
    rel <- spec$dataset_path
    path <- file.path("tests", "data", rel)
  } else if (isTRUE(spec$synthetic)) {
    rel <- file.path("extra", "datasets", paste0(spec$dataset, ".csv"))
    path <- file.path(out_dir, "datasets", paste0(spec$dataset, ".csv"))
  } else {
    rel <- NULL
    path <- dataset_file(datasets_dir, spec$dataset)
  }
  d <- read_data(path, grouping_vars(f))

  fits <- lapply(OPTIMIZERS, function(o) fit_with(f, d, spec$REML, o))
  names(fits) <- OPTIMIZERS
  objs <- vapply(fits, function(x) objective_of(x$model), numeric(1))
  best <- names(objs)[which.min(objs)]
  m <- fits[[best]]$model
  for (o in OPTIMIZERS) {
    conv <- fits[[o]]$model@optinfo$conv$lme4$messages
    notes <- unique(c(fits[[o]]$notes,
                      if (length(conv)) paste("conv:", conv)))
    if (length(notes))
      cat(sprintf("  [%s] %s\n", o, paste(notes, collapse = " | ")))
  }
  cat(sprintf("  objectives: %s -> %s; spread %.3g\n",
              paste(sprintf("%s=%.10f", names(objs), objs), collapse = ", "),
              best, max(objs) - min(objs)))

  sm <- summary(m)$coefficients
  fe <- fixef(m)
  ll <- logLik(m)
  ddf <- ddf_tables(m, spec$REML && nobs(m) <= 1500)

  out <- list(id = spec$id, dataset = spec$dataset)
  if (!is.null(rel)) out$dataset_path <- rel
  out$formula <- spec$formula
  if (!is.null(spec$formula_python)) out$formula_python <- spec$formula_python
  out <- c(out, list(
    REML = spec$REML,
    nobs = nobs(m),
    ngroups = as.list(ngrps(m)),
    fixef = as.list(fe),
    fixef_names = arr(names(fe)),
    stderr = arr(sm[, "Std. Error"]),
    tvalue = arr(sm[, "t value"]),
    vcov = mat(vcov(m)),
    theta = arr(getME(m, "theta")),
    theta_names = arr(names(getME(m, "theta"))),
    sigma = sigma(m),
    varcorr = varcorr_list(m),
    objective = objective_of(m),
    deviance_ml = if (spec$REML) "NA" else unname(deviance(m)),
    logLik = as.numeric(ll),
    AIC = AIC(m),
    BIC = BIC(m),
    df_logLik = attr(ll, "df"),
    is_singular = isSingular(m),
    ranef = ranef_list(m),
    fitted_head = arr(head(fitted(m), 10)),
    resid_head = arr(head(residuals(m), 10)),
    satterthwaite = ddf$sat,
    kenward_roger = ddf$kr,
    optimizer = best,
    objective_by_optimizer = as.list(objs),
    lme4_seconds_median = time_fit(f, d, spec$REML),
    lme4_version = as.character(packageVersion("lme4"))
  ))
  js <- toJSON(out, auto_unbox = TRUE, pretty = TRUE, digits = NA,
               null = "null", na = "string")
  writeLines(js, file.path(out_dir, paste0(spec$id, ".json")))
  cat(sprintf("  nobs %d, objective %.10f, singular %s, %.3fs\n",
              nobs(m), out$objective, isSingular(m), out$lme4_seconds_median))
}

main <- function(args) {
  opt <- function(name, default = NULL) {
    i <- match(name, args)
    if (is.na(i)) default else args[i + 1]
  }
  if ("--list" %in% args) {
    cat(vapply(MODELS, `[[`, "", "id"), sep = "\n")
    return(invisible())
  }
  out_dir <- opt("--out", "tests/data/extra")
  datasets_dir <- opt("--datasets",
                      if (dir.exists("/work/shared/reference/datasets"))
                        "/work/shared/reference/datasets"
                      else "src/mixedmodels/data")
  only <- opt("--only")
  models <- MODELS
  from <- opt("--from-json")
  if (!is.null(from)) {
    models <- lapply(sort(Sys.glob(file.path(from, "*.json"))), function(p) {
      j <- fromJSON(p)
      M(j$id, j$dataset, j$formula, j$REML, j$formula_python,
        synthetic = !is.null(j$dataset_path))
    })
    models <- Filter(function(s) !s$synthetic, models)
  }
  listed <- opt("--models")
  if (!is.null(listed)) {
    models <- lapply(fromJSON(listed, simplifyVector = FALSE), function(j)
      M(j$id, j$dataset, j$formula, j$REML, dataset_path = j$dataset_path))
  }
  if (!is.null(only)) {
    ids <- strsplit(only, ",")[[1]]
    unknown <- setdiff(ids, vapply(models, `[[`, "", "id"))
    if (length(unknown)) stop("unknown model ids: ", paste(unknown, collapse = ", "))
    models <- Filter(function(s) s$id %in% ids, models)
  }
  dir.create(file.path(out_dir, "datasets"), recursive = TRUE,
             showWarnings = FALSE)
  ## (re)make the synthetic data sets these models use
  for (nm in unique(unlist(lapply(models, function(s)
    if (isTRUE(s$synthetic)) s$dataset)))) {
    write.csv(SYNTHETIC[[nm]](), file.path(out_dir, "datasets",
                                          paste0(nm, ".csv")),
              row.names = FALSE)
  }
  cat(R.version.string, "| lme4", as.character(packageVersion("lme4")),
      "| lmerTest", as.character(packageVersion("lmerTest")),
      "| pbkrtest", as.character(packageVersion("pbkrtest")), "\n")
  for (s in models) {
    cat(s$id, ":", s$formula, if (s$REML) "(REML)" else "(ML)", "\n")
    make_one(s, datasets_dir, out_dir)
  }
}

main(commandArgs(trailingOnly = TRUE))
