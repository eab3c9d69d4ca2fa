"""Every rule, one table: each fires on a case that breaks it (at the activity that broke it) and stays
quiet on a close case that does not. The cases live with their family's tests (`@fires(code)`,
`@holds(code)` in tests/test_checks_*.py); this module runs them all, and fails when a rule has none."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import test_checks_addressing
import test_checks_directline
import test_checks_ordering
import test_checks_streaming

from botproxy.checks import RULES

FAMILIES = {  # whose cases: the family's own rules (and Direct Line's side of BP-O03)
    "addressing": test_checks_addressing._scenarios,
    "ordering": test_checks_ordering._scenarios,
    "directline": test_checks_directline._scenarios,
    "streaming+agents": test_checks_streaming._scenarios,
}
FIRING = [(f"{family} {code}", code, case) for family, s in FAMILIES.items() for code, case in s.firing.items()]
HOLDING = [(f"{family} {code}", code, case) for family, s in FAMILIES.items() for code, case in s.holding.items()]


def test_every_rule_has_a_firing_and_a_quiet_case():
    assert {code for _, code, _ in FIRING} == set(RULES)
    assert {code for _, code, _ in HOLDING} == set(RULES)


def test_each_family_tests_its_own_rules():
    for family, scenarios in FAMILIES.items():
        for code in {*scenarios.firing, *scenarios.holding}:
            assert RULES[code].family in family.split("+") or (family, code) == ("directline", "BP-O03"), code


@pytest.mark.parametrize(("name", "code", "case"), FIRING, ids=[name for name, _, _ in FIRING])
def test_rule_fires_at_the_faulty_activity(name: str, code: str, case: Callable[[], Any]):
    wire = case()
    found = wire.of(code)
    assert found, f"{code} did not fire; got {wire.codes()}"
    if wire.culprit is not None:
        assert {f.seq for f in found} == {wire.culprit}, [f.to_dict() for f in found]
    assert all(f.name == RULES[code].name for f in found)


@pytest.mark.parametrize(("name", "code", "case"), HOLDING, ids=[name for name, _, _ in HOLDING])
def test_rule_stays_quiet_on_the_close_case(name: str, code: str, case: Callable[[], Any]):
    wire = case()
    assert code not in wire.codes(), [f.to_dict() for f in wire.of(code)]
