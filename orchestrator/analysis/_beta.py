"""The Beta posterior of a stream's success probability, and its credible interval.

A plan's ``success_probability`` is a prior worth ``prior_weight`` runs; each recorded
success or failure adds one::

    alpha = prior_p * prior_weight + successes
    beta  = (1 - prior_p) * prior_weight + failures

with a missing prior taken as uniform, Beta(1, 1). The arithmetic is exact on the numbers
as written (``0.95`` is 19/20, not the nearest binary float), so a known history gives a
known posterior: prior 0.95 worth 4 runs, 3 successes and 1 failure is Beta(6.8, 1.2),
mean 0.85.

The credible interval comes from the regularized incomplete beta function (a continued
fraction, as in Numerical Recipes' ``betacf``) inverted by bisection: no scipy needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

__all__ = ["Beta", "beta_cdf", "posterior"]

_UNIFORM = Fraction(1)


def _exact(value: float) -> Fraction:
    """``value`` as the decimal it was written as (``0.95`` is 19/20)."""
    return Fraction(repr(float(value)))


@dataclass(frozen=True, slots=True)
class Beta:
    """A Beta(alpha, beta) distribution with exact parameters (alpha + beta > 0)."""

    alpha: Fraction
    beta: Fraction

    @property
    def mean(self) -> float:
        return float(self.alpha / (self.alpha + self.beta))

    def interval(self, mass: float = 0.9) -> tuple[float, float]:
        """The equal-tailed credible interval holding ``mass`` of the probability, to within
        1e-12. A parameter of 0 (a prior of exactly 0 or 1, never contradicted) puts all the
        mass at 1 or 0."""
        if not 0.0 < mass < 1.0:
            raise ValueError(f"an interval's mass must be between 0 and 1, not {mass!r}")
        if self.beta == 0:
            return (1.0, 1.0)
        if self.alpha == 0:
            return (0.0, 0.0)
        tail = (1.0 - mass) / 2
        return (self.quantile(tail), self.quantile(1.0 - tail))

    def quantile(self, q: float) -> float:
        """The ``q`` quantile (0 < q < 1), by bisection on the CDF."""
        a, b = float(self.alpha), float(self.beta)
        low, high = 0.0, 1.0
        while high - low > 1e-12:
            middle = (low + high) / 2
            if beta_cdf(middle, a, b) < q:
                low = middle
            else:
                high = middle
        return (low + high) / 2


def posterior(
    prior_p: float | None, successes: int, failures: int, prior_weight: float = 4.0
) -> Beta:
    """The posterior of a stream's success probability (see the module doc).

    Raises ValueError for a prior outside [0, 1], negative counts or a weight that is not
    positive.
    """
    if successes < 0 or failures < 0:
        raise ValueError(f"counts cannot be negative: {successes} successes, {failures} failures")
    if prior_p is None:
        return Beta(_UNIFORM + successes, _UNIFORM + failures)
    if not 0.0 <= prior_p <= 1.0:
        raise ValueError(f"a prior probability must be within [0, 1], not {prior_p!r}")
    if not prior_weight > 0:
        raise ValueError(f"the prior's weight must be positive, not {prior_weight!r}")
    p, weight = _exact(prior_p), _exact(prior_weight)
    return Beta(p * weight + successes, (1 - p) * weight + failures)


def beta_cdf(x: float, a: float, b: float) -> float:
    """The regularized incomplete beta function I_x(a, b), for a, b > 0."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    # The continued fraction converges fast on this side; use the symmetry on the other.
    if x < (a + 1) / (a + b + 2):
        return front * _continued_fraction(x, a, b) / a
    return 1.0 - front * _continued_fraction(1.0 - x, b, a) / b


def _continued_fraction(x: float, a: float, b: float) -> float:
    """Lentz's method for the continued fraction of I_x(a, b)."""
    tiny, epsilon = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 10_000):
        m2 = 2 * m
        numerator = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + numerator * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + numerator / c
        c = c if abs(c) > tiny else tiny
        result *= d * c
        numerator = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + numerator * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + numerator / c
        c = c if abs(c) > tiny else tiny
        step = d * c
        result *= step
        if abs(step - 1.0) < epsilon:
            break
    return result
