#!/usr/bin/env Rscript
## lme4's results of fitted GLMMs that the shared references do not hold:
## residuals of every type and the conditional variances of the modes.
##
## Refits some models of tests/data/glmm (their JSON says how: data set,
## formula, family, link, nAGQ, weights, offset, dtypes) and writes, per model,
## tests/data/glmm_results/<id>.json with
##   residuals: the first 20 residuals(fit, type = t) for t in response,
##              working, deviance, pearson (rows used, in order);
##   fitted:    the first 20 fitted(fit) (response scale);
##   condvar:   per grouping factor, the first 10 levels' attr(ranef(fit,
##              condVar = TRUE)[[g]], "postVar") as levels x q x q, and the
##              level labels; q = the columns of all its terms together.
##
## Usage (from the repository root): Rscript dev/make_glmm_results_reference.R

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})
invisible(Sys.setlocale("LC_COLLATE", "C"))

IDS <- c("cbpp_trials_logit", "cbpp_weights_logit", "grouseticks_poisson",
         "mmmec_offset_arg_poisson", "gcsemv_gamma_log_na",
         "contraception_urban_slope_logit", "epil_nb", "cbpp_probit")
SOURCE <- "tests/data/glmm"
OUT <- "tests/data/glmm_results"
dir.create(OUT, showWarnings = FALSE, recursive = TRUE)

family_of <- function(ref) {
  switch(ref$family,
         binomial = binomial(link = ref$link),
         poisson = poisson(link = ref$link),
         Gamma = Gamma(link = ref$link),
         stop("family ", ref$family))
}

head_of <- function(x, k = 20) unname(as.numeric(x)[seq_len(min(k, length(x)))])

for (id in IDS) {
  ref <- fromJSON(file.path(SOURCE, paste0(id, ".json")), simplifyVector = TRUE)
  data <- read.csv(gzfile(file.path(SOURCE, "datasets", paste0(ref$dataset, ".csv.gz"))))
  for (column in names(ref$python_dtypes)) data[[column]] <- factor(data[[column]])
  if (!is.null(ref$response_levels)) {
    response <- all.vars(as.formula(ref$formula))[1]
    data[[response]] <- factor(data[[response]])
  }
  formula <- as.formula(ref$formula)
  fit <- if (ref$fit_function == "glmer.nb") {
    glmer.nb(formula, data = data)
  } else {
    args <- list(formula, data = data, family = family_of(ref), nAGQ = ref$nAGQ)
    if (!is.null(ref$weights)) args$weights <- data[[ref$weights]]
    if (!is.null(ref$offset)) args$offset <- eval(parse(text = ref$offset), data)
    do.call(glmer, args)
  }
  residuals <- lapply(c(response = "response", working = "working",
                        deviance = "deviance", pearson = "pearson"),
                      function(t) head_of(residuals(fit, type = t)))
  modes <- ranef(fit, condVar = TRUE)
  condvar <- lapply(names(modes), function(g) {
    post <- attr(modes[[g]], "postVar")
    if (is.list(post)) stop("several terms share ", g, ": not written")
    k <- min(10, dim(post)[3])
    list(group = g, levels = rownames(modes[[g]])[seq_len(k)],
         columns = colnames(modes[[g]]),
         postvar = lapply(seq_len(k), function(l) unname(post[, , l, drop = TRUE])))
  })
  out <- list(id = id, objective = unname(deviance(fit, REML = FALSE)),
              minus2logLik = -2 * as.numeric(logLik(fit)),
              residuals = residuals, fitted = head_of(fitted(fit)),
              condvar = condvar, lme4_version = format(packageVersion("lme4")))
  writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE),
             file.path(OUT, paste0(id, ".json")))
  cat("wrote", id, "\n")
}
