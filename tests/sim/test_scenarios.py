"""The bundled scenario library (scenarios/): every file parses, is named after its file, says
what it shows and what it expects, and the regimens are laid out as the label says
(docs/drug-library.md).
Parsing only: running the library is `make suite`."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.scenario import Scenario, bsa_m2, load

LIBRARY = Path(__file__).resolve().parents[2] / "scenarios"
FILES = sorted(LIBRARY.glob("*.toml"))


def scenario(name: str) -> Scenario:
    return load(str(LIBRARY / ("%s.toml" % name)))


def test_library_is_there() -> None:
    assert len(FILES) >= 15


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_every_bundled_scenario_parses_and_expects_something(path: Path) -> None:
    sc = load(str(path))
    assert sc.name == path.stem
    assert sc.description.strip()
    assert {k for k in sc.expect if k != "xfail"}, "no [expect]"
    if "xfail" in sc.expect:
        assert len(sc.expect["xfail"]) > 20, "an xfail must give its reason"


def test_adult_cycle1_steps_up_on_day_8_at_the_same_rate() -> None:
    sc = scenario("adult-cycle1-24h-bags")
    assert len(sc.bags) == 28
    assert [b.dose_ug_per_day for b in sc.bags] == [9.0] * 7 + [28.0] * 21
    assert {b.rate_ml_per_h for b in sc.bags} == {10.0}
    assert {b.vtbi_ml for b in sc.bags} == {240.0}
    assert sc.bags[0].concentration_ug_per_ml == pytest.approx(9.0 / 240.0)
    assert sc.bags[7].concentration_ug_per_ml == pytest.approx(28.0 / 240.0)
    # a bag change (pause) at every bag's end, none before the first
    assert sc.bags[0].gap_ms == 0 and {b.gap_ms for b in sc.bags[1:]} == {600_000}
    assert sc.hours >= 28 * 24 + 27 * 10 / 60


@pytest.mark.parametrize("name,bags,rate,vtbi", [
    ("adult-cycle2-48h-bags", 14, 5.0, 240.0),
    ("adult-cycle2-7day-bags", 4, 0.6, 100.8),
    ("adult-48h-bag", 1, 5.0, 240.0),
    ("adult-7day-bag", 1, 0.6, 100.8),
    ("adult-24h-bag", 1, 10.0, 240.0),
    ("adult-72h-bag", 1, 3.3, 240.0),
    ("adult-96h-bag", 1, 2.5, 240.0),
])
def test_bag_regimens_use_the_label_rates(name: str, bags: int, rate: float,
                                          vtbi: float) -> None:
    sc = scenario(name)
    assert len(sc.bags) == bags
    assert {(b.rate_ml_per_h, b.vtbi_ml) for b in sc.bags} == {(rate, vtbi)}


def test_child_is_dosed_by_bsa_with_the_caps() -> None:
    sc = scenario("child-cycle1-bsa-24h-bags")
    bsa = bsa_m2(20.0, 115.0)
    assert [round(b.dose_ug_per_day, 6) for b in sc.bags] == \
        [round(5.0 * bsa, 6)] * 7 + [round(15.0 * bsa, 6)] * 21
    assert all(b.dose_ug_per_day <= 28.0 for b in sc.bags)


@pytest.mark.parametrize("name,code", [
    ("wrong-rate-keyed-100-ml-h", "RATE_VOLUME_MISMATCH"),
    ("wrong-rate-keyed-6-ml-h-7day-bag", "RATE_VOLUME_MISMATCH"),
    ("concentration-error-label-10x", "CONCENTRATION_OUT_OF_RANGE"),
    ("concentration-error-step-up-bag-mixup", "DOSE_RATE_MISMATCH"),
    ("child-7day-bag-below-weight-limit", "PRESERVATIVE_WEIGHT_LIMIT"),
    ("child-72h-bag-below-weight-limit", "PRESERVATIVE_WEIGHT_LIMIT"),
    ("wrong-unit-ml-per-24h", "UNIT_REJECTED"),
])
def test_programming_errors_must_be_rejected_with_nothing_delivered(name: str,
                                                                   code: str) -> None:
    ex = scenario(name).expect
    assert ex["accepted"] is False and ex["reject_code"] == code
    assert ex["delivered_ml_max"] == 0.0


def test_wrong_rate_and_concentration_errors_differ_from_the_label() -> None:
    wr = scenario("wrong-rate-keyed-100-ml-h").bags[0]
    assert wr.rate_ml_per_h == 100.0 and wr.vtbi_ml == 240.0 and wr.bag_hours == 24
    ce = scenario("concentration-error-label-10x").bags[0]
    assert ce.concentration_ug_per_ml == pytest.approx(10 * 28.0 / 240.0, rel=1e-4)
    mix = scenario("concentration-error-step-up-bag-mixup").bags[0]
    assert mix.dose_ug_per_day == 9.0
    assert mix.concentration_ug_per_ml == pytest.approx(28.0 / 240.0, rel=1e-4)


@pytest.mark.parametrize("name,kind,alarm,limits", [
    ("runaway-motor-10x-24h-bag", "motor_runaway", "OVER_INFUSION",
     {"max_excess_ml": 0.1, "max_fault_excess_ml": 0.1}),
    ("runaway-motor-100x-7day-bag", "motor_runaway", "OVER_INFUSION",
     {"max_excess_ml": 0.1, "max_fault_excess_ml": 0.1}),
    ("runaway-motor-2x-48h-bag", "motor_runaway", "OVER_INFUSION",
     {"max_excess_ml": 0.1, "max_fault_excess_ml": 0.1}),
    ("controller-rate-error-2x-24h-bag", "controller_rate_error", "OVER_INFUSION",
     {"max_fault_excess_ml": 0.25}),
    ("rate-drift-10pct-24h-bag", "rate_drift", "OVER_INFUSION", {"alarm_within_min": 60.0}),
    ("free-flow-cassette-out-24h-bag", "free_flow", "FREE_FLOW", {"max_fault_excess_ml": 0.1}),
    ("occlusion-7day-bag", "occlusion", "OCCLUSION",
     {"alarm_within_min": 30.0, "max_bolus_ml": 0.05}),
    ("occlusion-24h-bag", "occlusion", "OCCLUSION", {"max_bolus_ml": 0.05}),
    ("power-loss-24h-bag", "power_loss", "INFUSION_COMPLETE", {"max_bolus_ml": 0.0}),
])
def test_fault_scenarios_expect_what_spec_requires(name: str, kind: str, alarm: str,
                                                   limits: dict[str, float]) -> None:
    """PR-1 / PR-3 / SR-9 limits, never looser than the SPEC."""
    sc = scenario(name)
    assert [f.kind for f in sc.faults] == [kind]
    assert sc.expect["alarm"] == alarm
    for key, limit in limits.items():
        assert sc.expect[key] <= limit, key
