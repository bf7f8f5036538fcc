"""The fit section: the pre-specified headline audit and its validation."""

import typing

import pytest

from taggant.pipeline import mia
from taggant.pipeline.errors import ConfigError
from taggant.pipeline.spec import FitSpec, parse_section


def test_the_spec_offers_exactly_the_attacks_mia_evaluates():
    attack = FitSpec.model_fields["audit_attack"].annotation
    assert set(typing.get_args(attack)) == set(mia.ATTACKS)


def test_defaults_and_bad_values_name_the_field():
    spec = parse_section(FitSpec, {})
    assert (spec.audit_attack, spec.audit_step, spec.audit_delta, spec.confidence) == (
        "loss",
        "last",
        0.0,
        0.95,
    )
    assert parse_section(FitSpec, {"audit_step": 500, "audit_delta": 1e-5}).audit_step == 500
    for bad, field in [
        ({"audit_step": -1}, "audit_step"),
        ({"audit_step": "first"}, "audit_step"),
        ({"audit_attack": "best"}, "audit_attack"),
        ({"audit_delta": 1.0}, "audit_delta"),
    ]:
        with pytest.raises(ConfigError, match=field):
            parse_section(FitSpec, bad)
