"""The permutation p-value is exact under exchangeability (skewed scores, few members) and is
deterministic for a seeded generator."""

import numpy as np
import pytest

from taggant.pipeline.randomization import permutation_p


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_type_one_error_holds_with_few_members_and_skewed_scores(alternative):
    rng = np.random.default_rng(0)
    p = [
        permutation_p(*np.split(rng.lognormal(0, 1, 44), [4]), rng, alternative, resamples=499)
        for _ in range(400)
    ]
    # the nominal 0.05 plus two Monte-Carlo standard errors of a rate over 400 replicates
    assert np.mean(np.array(p) <= 0.05) <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / 400)


def test_a_real_shift_is_found_and_the_direction_matters():
    rng = np.random.default_rng(1)
    members, controls = rng.normal(1.5, 1, 20), rng.normal(0, 1, 20)
    assert permutation_p(members, controls, rng, "greater") < 0.01
    assert permutation_p(members, controls, rng, "less") > 0.9
    assert permutation_p(members, controls, np.random.default_rng(3)) == permutation_p(
        members, controls, np.random.default_rng(3)
    )


def test_bad_arguments_are_refused():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="alternative"):
        permutation_p(np.ones(2), np.ones(2), rng, "bigger")
    with pytest.raises(ValueError, match="at least one member"):
        permutation_p(np.array([]), np.ones(2), rng)
