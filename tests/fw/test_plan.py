"""The treatment plan (issue 3, SR-7): cycles, bag changes, interruptions, restarts."""
from pump import plan, program

BLIN = "blinatumomab"
# bags per adult cycle 1 by bag option: 7 days at 9 µg/day, 21 days at 28 µg/day
BAGS = {24: (7, 21), 48: (4, 11), 72: (3, 7), 96: (2, 6), 168: (1, 3)}


def _daily(c):
    """Daily dose for each of the cycle's infusion days, from its bags."""
    days = [0] * c["infusion_days"]
    for b in c["bags"]:
        for h in range(b["start_h"], b["start_h"] + b["hours"], 24):
            days[h // 24] = b["daily_ng"]
    return days


def test_adult_cycle_1_step_up_and_bag_changes():
    for hours in BAGS:
        c = plan.cycle(BLIN, "r/r", 1, hours, weight_g=70000)
        assert c["infusion_days"] == 28 and c["off_days"] == 14
        assert _daily(c) == [9000] * 7 + [28000] * 21, hours
        low = [b for b in c["bags"] if b["daily_ng"] == 9000]
        high = [b for b in c["bags"] if b["daily_ng"] == 28000]
        assert (len(low), len(high)) == BAGS[hours], (hours, len(low), len(high))
        assert c["bag_changes"] == len(c["bags"]) - 1
        # a bag change at each bag's end: bags are contiguous, none crosses day 8
        t = 0
        for b in c["bags"]:
            assert b["start_h"] == t
            assert b["hours"] <= b["rx"]["bag_hours"]
            assert not (b["start_h"] < 168 < b["start_h"] + b["hours"])
            t += b["hours"]
        assert t == 28 * 24


def test_later_and_continued_cycles():
    c = plan.cycle(BLIN, "r/r", 2, 24, weight_g=70000)
    assert _daily(c) == [28000] * 28 and c["off_days"] == 14
    c = plan.cycle(BLIN, "r/r", 6, 168, weight_g=70000)
    assert c["off_days"] == 56 and len(c["bags"]) == 4
    c = plan.cycle(BLIN, "mrd", 1, 24, weight_g=70000)
    assert _daily(c) == [28000] * 28
    co = plan.course(BLIN, "r/r", 7, 24, weight_g=70000)
    assert [x["start_day"] for x in co] == [1, 43, 85, 127, 169, 211, 295]


def test_bsa_cycle_doses_and_caps():
    bsa = program.bsa_cm2(20000, 1100)
    c = plan.cycle(BLIN, "r/r", 1, 48, weight_g=20000, bsa_cm2=bsa)
    assert c["bags"][0]["rx"]["dose_ng_per_m2_per_day"] == 5000
    assert c["bags"][-1]["rx"]["dose_ng_per_m2_per_day"] == 15000
    assert abs(c["bags"][-1]["daily_ng"] - 11726) < 20
    big = plan.cycle(BLIN, "r/r", 1, 24, weight_g=44000, bsa_cm2=21000)
    assert big["bags"][0]["daily_ng"] == 9000 and big["bags"][-1]["daily_ng"] == 28000
    # preservative bags are not planned for a patient under their weight limit
    try:
        plan.cycle(BLIN, "r/r", 1, 168, weight_g=15000, bsa_cm2=6500)
        raise AssertionError("7-day bag planned for 15 kg")
    except ValueError:
        pass


def test_plan_bags_become_programs():
    c = plan.cycle(BLIN, "r/r", 1, 48, weight_g=70000)
    for b in c["bags"]:
        rx = dict(b["rx"])
        rx["weight_g"] = 70000
        rx["height_mm"] = 1750
        p = program.prescribe(rx)
        assert isinstance(p, dict) and p["daily_ng"] == b["daily_ng"]


def test_sr7_interruptions():
    it = plan.interruption(BLIN, 3 * 3600, 100)
    assert it["action"] == "continue" and not it["premedication"]
    assert it["remaining_infusion_h"] == 28 * 24 - 100
    it = plan.interruption(BLIN, 4 * 3600, 100)
    assert it["premedication"] and it["supervision"]
    it = plan.interruption(BLIN, 7 * 86400, 300)
    assert it["action"] == "continue" and it["remaining_infusion_h"] == 372
    it = plan.interruption(BLIN, 7 * 86400 + 1, 300)
    assert it["action"] == "new_cycle" and it["remaining_infusion_h"] == 28 * 24


def test_restart_after_grade_3_at_lower_dose():
    r = plan.restart_after_toxicity(BLIN, 3, 2 * 86400, 10 * 24, 24, weight_g=70000)
    assert r["action"] == "restart_lower_dose" and r["premedication"]
    assert not r["new_cycle"]
    days = [b["daily_ng"] for b in r["bags"]]
    assert days == [9000] * 7 + [28000] * 11          # 18 days left of the 28
    r = plan.restart_after_toxicity(BLIN, 3, 10 * 86400, 10 * 24, 24, weight_g=70000)
    assert r["new_cycle"] and sum(b["hours"] for b in r["bags"]) == 28 * 24
    r = plan.restart_after_toxicity(BLIN, 3, 86400, 25 * 24, 24, weight_g=20000,
                                    bsa_cm2=7817)
    assert [b["rx"]["dose_ng_per_m2_per_day"] for b in r["bags"]] == [5000] * 3
    assert plan.restart_after_toxicity(BLIN, 4, 86400, 0, 24)["action"] == "discontinue"
    r = plan.restart_after_toxicity(BLIN, 2, 3600, 50, 24)
    assert r["action"] == "resume_same_dose"
