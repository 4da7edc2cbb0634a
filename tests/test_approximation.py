import math

import pytest
import torch

from lightning_saliency.attribution.approximation import (
    fixed_rule,
    nested_level,
    points_up_to,
    romberg_coefficients,
)


@pytest.mark.parametrize("rule,n,degree", [("gauss_legendre", 5, 9), ("trapezoid", 11, 1), ("riemann_middle", 7, 1)])
def test_fixed_rules_integrate_polynomials(rule, n, degree):
    alphas, weights = fixed_rule(rule, n)
    assert weights.sum().item() == pytest.approx(1.0, abs=1e-12)
    for k in range(degree + 1):
        assert float((weights * alphas**k).sum()) == pytest.approx(1 / (k + 1), abs=1e-12)


def test_gauss_legendre_matches_captum_points():
    from captum.attr._utils.approximation_methods import approximation_parameters

    step_sizes, alphas = approximation_parameters("gausslegendre")
    ours_a, ours_w = fixed_rule("gauss_legendre", 17)
    assert torch.allclose(ours_a, torch.tensor(alphas(17), dtype=torch.float64))
    assert torch.allclose(ours_w, torch.tensor(step_sizes(17), dtype=torch.float64))


def test_nested_levels_cover_uniform_grid_once():
    seen = torch.cat([nested_level(level)[0] for level in range(5)]).sort().values
    assert torch.allclose(seen, torch.linspace(0, 1, points_up_to(4), dtype=torch.float64))


def test_romberg_combination_converges_fast_on_smooth_integrand():
    f = lambda a: torch.exp(3 * a)  # noqa: E731
    exact = (math.exp(3) - 1) / 3
    sums = []
    for level in range(6):
        alphas, weights = nested_level(level)
        sums.append(float((weights * f(alphas)).sum()))
        romberg = float((romberg_coefficients(level) * torch.tensor(sums)).sum())
        trapezoid = float((romberg_coefficients(level, extrapolate=False) * torch.tensor(sums)).sum())
        if level >= 3:
            assert abs(romberg - exact) < abs(trapezoid - exact) / 100
    assert romberg == pytest.approx(exact, rel=1e-7)


def test_bad_rule_arguments():
    with pytest.raises(ValueError, match="Unknown integration rule"):
        fixed_rule("simpson", 5)
    with pytest.raises(ValueError, match="n_steps"):
        fixed_rule("gauss_legendre", 0)
