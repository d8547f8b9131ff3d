"""Models without fixed effects (``y ~ 0 + (1 | g)``), against lme4.

The gradient and R_X⁻¹ once failed on an empty X (a reshape to (0, −1) and
LAPACK's dtrtri of a 0×0 matrix).  lme4 1.1-31's values:

    m <- lmer(Reaction ~ 0 + (1 | Subject), sleepstudy)
    c(REMLcrit(m), getME(m, "theta"), sigma(m))
    m2 <- lmer(Reaction ~ 0 + (Days | Subject), sleepstudy, REML = FALSE)
    c(deviance(m2), getME(m2, "theta"))
"""

from __future__ import annotations

import numpy as np
import pytest

import mixedmodels as mm


@pytest.mark.parametrize("optimizer", ["quasi-newton", "bobyqa"])
def test_intercept_only_random_effects(optimizer):
    data = mm.datasets.load("sleepstudy")
    model = mm.LinearMixedModel("Reaction ~ 0 + (1 | Subject)", data).fit(optimizer=optimizer)
    assert model.converged
    assert model.objective <= 1985.6796909430 + 1e-7
    np.testing.assert_allclose(model.theta, [6.7896872649], rtol=1e-5)
    np.testing.assert_allclose(model.sigma, 44.2590690373, rtol=1e-6)
    assert model.fixef.empty


def test_vector_term_by_maximum_likelihood():
    data = mm.datasets.load("sleepstudy")
    model = mm.lmer("Reaction ~ 0 + (Days | Subject)", data, reml=False)
    assert model.converged
    assert model.objective <= 1832.781364371252 + 1e-7
    # The deviance is flat here: ours is 3e-9 below lme4's, θ within 2e-5 of its.
    np.testing.assert_allclose(
        model.theta, [9.867532621782, 0.408903536998, 0.223578093553], rtol=1e-4
    )
