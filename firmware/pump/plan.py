"""The treatment plan: a cycle as a sequence of bag programs (step-up, bag changes, off
period), interruptions and restarts (SR-7), all read from the drug library's regimens.

Pure functions returning lists and dicts, the same on the pump, in the simulator and in the
host tool (docs/treatment-plan.md). Each bag carries an `rx` (drug, dose, bag_hours) that
program.make_label / program.propose take once the patient fields are added.
"""
from pump import druglib


def _drug(name, lib):
    lib = lib if lib is not None else druglib.default()
    d = lib.drug(name)
    if d is None:
        raise ValueError("plan: unknown drug %s" % (name,))
    return d


def _adult(drug, weight_g):
    return weight_g is None or weight_g >= drug.adult_min_weight_g


def dose_for(drug, step, weight_g=None, bsa_cm2=None):
    """The prescription dose fields for a regimen step and patient class, plus daily_ng."""
    if _adult(drug, weight_g):
        d = drug.fixed_steps[step]
        return {"dose_ng_per_day": d, "daily_ng": d}
    per_m2 = drug.bsa_steps[step]
    if not bsa_cm2:
        raise ValueError("plan: a patient under %d g needs a BSA" % drug.adult_min_weight_g)
    daily = (per_m2 * bsa_cm2 + 5000) // 10000
    cap = drug.bsa_caps[step]
    return {"dose_ng_per_m2_per_day": per_m2, "daily_ng": cap if daily > cap else daily}


def _eligible(drug, weight_g):
    """Bag durations the patient may have (preservative bags need their weight limit)."""
    out = []
    for h in sorted(drug.bags):
        b = drug.bags[h]
        if not b.preservative or (weight_g is not None and weight_g >= b.min_weight_g):
            out.append(h)
    return out


def _fill(drug, spans, bag_hours, weight_g, bsa_cm2):
    """Bags covering spans [(start_h, end_h, step), ...]: the chosen option while it fits,
    then the longest eligible shorter option (a bag never crosses a dose step); a remainder
    shorter than every option gets the shortest option, stopped early by its VTBI."""
    ok = _eligible(drug, weight_g)
    if bag_hours not in ok:
        raise ValueError("plan: %s h bag not offered for this patient" % (bag_hours,))
    bags = []
    for t, end, step in spans:
        dose = dose_for(drug, step, weight_g, bsa_cm2)
        while t < end:
            h = bag_hours
            if t + h > end:
                h = 0
                for o in ok:
                    if o <= end - t and o > h:
                        h = o
            run = h
            if h == 0:
                h = ok[0]
                run = end - t
            rx = {"drug": drug.name, "bag_hours": h}
            for k in dose:
                if k != "daily_ng":
                    rx[k] = dose[k]
            bags.append({"start_h": t, "hours": run, "step": step, "day": t // 24 + 1,
                         "daily_ng": dose["daily_ng"], "rx": rx})
            t += run
    return bags


def _cycle_spec(drug, regimen, cycle_no):
    reg = drug.regimens.get(regimen)
    if reg is None:
        raise ValueError("plan: unknown regimen %s" % (regimen,))
    for c in reg["cycles"]:
        if c["from"] <= cycle_no <= c["to"]:
            return c
    raise ValueError("plan: regimen %s has no cycle %d" % (regimen, cycle_no))


def _days(spans):
    """Day spans [(day_from, day_to, step)] as hour spans."""
    out = []
    for day_from, day_to, step in spans:
        out.append(((day_from - 1) * 24, day_to * 24, step))
    return out


def _result(spans, bags, off_days, extra):
    steps = []
    for t, end, step in spans:
        steps.append({"day_from": t // 24 + 1, "day_to": (end + 23) // 24, "start_h": t,
                      "end_h": end, "step": step})
    last = spans[len(spans) - 1][1] if spans else 0
    out = {"steps": steps, "bags": bags, "bag_changes": len(bags) - 1 if bags else 0,
           "infusion_h": last, "infusion_days": (last + 23) // 24, "off_days": off_days}
    for k in extra:
        out[k] = extra[k]
    return out


def cycle(drug_name, regimen, cycle_no, bag_hours, weight_g=None, bsa_cm2=None, lib=None):
    """One cycle: dose steps by day, the bags hung (a change at each bag's end and at each
    step-up), the bag changes counted after the first bag, and the off period that follows."""
    drug = _drug(drug_name, lib)
    c = _cycle_spec(drug, regimen, cycle_no)
    spans = _days(c["steps"])
    bags = _fill(drug, spans, bag_hours, weight_g, bsa_cm2)
    return _result(spans, bags, c["off_days"], {"regimen": regimen, "cycle": cycle_no})


def course(drug_name, regimen, cycles, bag_hours, weight_g=None, bsa_cm2=None, lib=None):
    """Cycles 1..cycles with their first day counted from day 1 of cycle 1."""
    out = []
    day = 1
    for n in range(1, cycles + 1):
        c = cycle(drug_name, regimen, n, bag_hours, weight_g, bsa_cm2, lib)
        c["start_day"] = day
        day += c["infusion_days"] + c["off_days"]
        out.append(c)
    return out


def interruption(drug_name, gap_s, infused_h, lib=None):
    """What an interruption of gap_s means after infused_h hours of this cycle (SR-7):
    <= 7 days continue the cycle to its 28 infusion days, > 7 days start a new cycle;
    a restart after >= 4 h needs premedication and supervision."""
    drug = _drug(drug_name, lib)
    total_h = drug.infusion_days * 24
    new = gap_s > drug.interruption_continue_max_s
    remaining = total_h if new else total_h - infused_h
    if remaining < 0:
        remaining = 0
    flag = gap_s >= drug.interruption_premed_s
    return {"action": "new_cycle" if new else "continue", "remaining_infusion_h": remaining,
            "premedication": flag, "supervision": flag}


def restart_after_toxicity(drug_name, grade, gap_s, infused_h, bag_hours, weight_g=None,
                           bsa_cm2=None, lib=None):
    """Restart after CRS or neurotoxicity: grade >= 4 discontinue; grade 3 restart at the
    lower step and escalate after 7 days (over what is left of the cycle, or a new cycle
    when the interruption was > 7 days); lower grades resume at the same dose."""
    drug = _drug(drug_name, lib)
    it = interruption(drug_name, gap_s, infused_h, lib)
    if grade >= drug.tox_discontinue_grade:
        return {"action": "discontinue"}
    if grade < drug.tox_restart_grade:
        it["action"] = "resume_same_dose" if it["action"] == "continue" else "new_cycle"
        return it
    left = it["remaining_infusion_h"]
    low = drug.tox_restart_step
    top = len(drug.fixed_steps) - 1
    esc = drug.tox_escalate_after_days * 24
    spans = [(0, left if left < esc else esc, low)]
    if left > esc:
        spans.append((esc, left, top))
    bags = _fill(drug, spans, bag_hours, weight_g, bsa_cm2)
    extra = {"action": "restart_lower_dose", "new_cycle": it["action"] == "new_cycle",
             "premedication": it["premedication"], "supervision": it["supervision"]}
    return _result(spans, bags, 0, extra)
