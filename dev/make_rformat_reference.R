#!/usr/bin/env Rscript
## R's formatting of numbers, p values, labels and coefficient tables, for
## tests/results/test_rformat.py (the rules the text summary follows).
##
## Usage (from the repository root): Rscript dev/make_rformat_reference.R
## Writes tests/data/summaries/rformat.json.
suppressPackageStartupMessages(library(jsonlite))
options(width = 80, useFancyQuotes = FALSE)
set.seed(20240611)

scales <- c(1e-9, 1e-5, 1e-3, 0.01, 1, 10, 100, 1e4, 1e6, 1e9)
rvec <- function() {
  n <- sample(1:6, 1)
  x <- signif(rnorm(n) * sample(scales, n, replace = TRUE), sample(1:8, 1))
  if (runif(1) < 0.1) x[1] <- 0
  if (runif(1) < 0.1) x[1] <- round(x[1])
  x
}
formats <- lapply(1:300, function(i) {
  x <- rvec(); d <- sample(1:7, 1); ns <- sample(c(0, 0, 2, 3), 1)
  list(x = x, digits = d, nsmall = ns, out = format(x, digits = d, nsmall = ns))
})
formats <- c(formats, list(
  list(x = c(9996, 1), digits = 3, nsmall = 0, out = format(c(9996, 1), digits = 3)),
  list(x = c(0.99996), digits = 4, nsmall = 0, out = format(0.99996, digits = 4)),
  list(x = c(1e-120, 1), digits = 3, nsmall = 0, out = format(c(1e-120, 1), digits = 3))
))
pvals <- lapply(1:150, function(i) {
  p <- 10^runif(sample(1:5, 1), -20, 0)
  if (runif(1) < 0.2) p[1] <- 1e-17
  list(p = p, out = format.pval(p, digits = 3))
})
labels <- c("(Intercept)", "Days", "age:SexMale", "SexMale", "MachineB", "MachineC",
            "standLRT", "sexM", "recipeB:factor(temp)185", "I(Days^2)", "log(x)",
            "verbal", "treatmentPlacebo", "poly(Days, 2)1", "poly(Days, 2)2",
            "x1", "x2", "a b c", "Temperature", "Time", "yearC:sizeB")
abbrevs <- lapply(c(1, 4, 6, 11), function(m)
  list(names = labels, minlength = m, out = unname(abbreviate(labels, minlength = m))))
abbrevs <- c(abbrevs, list(list(names = c("recipeB", "recipeC", "recipeA"), minlength = 6,
  out = unname(abbreviate(c("recipeB", "recipeC", "recipeA"), minlength = 6)))))
coefmats <- lapply(1:60, function(i) {
  p <- sample(1:5, 1)
  est <- rnorm(p) * sample(scales[3:8], p, replace = TRUE)
  se <- abs(est) * exp(rnorm(p)) / sample(c(1, 3, 30, 300), 1)
  df <- sample(c(3, 17, 250, 3000, 1e5), 1) * exp(rnorm(p) / 5)
  t <- est / se
  withp <- runif(1) < 0.8
  m <- if (withp) cbind(Estimate = est, "Std. Error" = se, df = df, "t value" = t,
                        "Pr(>|t|)" = 2 * pt(-abs(t), df))
       else cbind(Estimate = est, "Std. Error" = se, "t value" = t)
  rownames(m) <- paste0("x", seq_len(p))
  list(table = unname(m), columns = colnames(m), has_pvalue = withp,
       lines = capture.output(printCoefmat(m, digits = 4, signif.legend = FALSE)))
})
writeLines(toJSON(list(format = formats, pvalue = pvals, abbreviate = abbrevs,
                       coefmat = coefmats), auto_unbox = FALSE, digits = I(17)),
           "tests/data/summaries/rformat.json")
