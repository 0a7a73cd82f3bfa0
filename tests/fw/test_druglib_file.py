"""A malformed drug library is refused with an error that names what is wrong (SR-2): the
library is device configuration, loaded at boot, and a value outside its bounds, of the wrong
type, missing for the label version, or inconsistent with another must stop the load rather
than reach a program. Each bound at and around its edge. Runs on CPython and MicroPython."""
from pump import druglib

VERSION = "older"


def _drug(doc):
    return doc["drugs"][0]


def _set(node, v):
    node.clear()
    node["value"] = v
    node["source"] = "test"


def _load(mutate):
    doc = druglib.read()
    mutate(doc)
    return druglib.Library(doc, VERSION)


def _refused(mutate, words):
    try:
        _load(mutate)
    except ValueError as e:
        msg = str(e)
        assert msg.startswith("druglib: ") and words in msg, (msg, words)
        return msg
    raise AssertionError("accepted: " + words)


# (path in the drug entry, lowest, highest) of every bounded integer
_BOUNDED = (
    (("lockout_s",), 0, 1 << 30),
    (("pause_reminder_s",), 1, 1 << 30),
    (("dose_min_ng_per_day",), 1, 1 << 30),
    (("max_overfill_pct",), 0, 1000),
    (("infusion_days",), 1, 366),
    (("interruption_continue_max_s",), 0, 1 << 30),
    (("toxicity_restart", "escalate_after_days"), 0, 366),
    (("toxicity_restart", "restart_grade"), 1, 5),
    (("toxicity_restart", "discontinue_grade"), 1, 5),
    (("patient_checks", "bmi_min_kg_per_m2"), 1, 1000),
    (("patient_checks", "bmi_max_kg_per_m2"), 1, 1000),
    (("patient_checks", "weight_change_max_pct"), 0, 1000),
    (("restart_rules", "plan_day_slack_s"), 0, 86400),
    (("vial", "ug"), 1, 1 << 30),
    (("vial", "water_ul"), 1, 1 << 30),
    (("vial", "conc_ng_per_ml"), 1, 1 << 30),
    (("vial", "withdrawable_ul"), 1, 1 << 30),
)


def _at(path):
    def get(doc):
        node = _drug(doc)
        for k in path:
            node = node[k]
        return node
    return get


def test_sr2_every_bounded_library_integer_is_taken_at_its_edges_and_refused_past_them():
    for path, lo, hi in _BOUNDED:
        get = _at(path)
        for v in (lo, hi):
            lib = _load(lambda doc: _set(get(doc), v))
            assert lib.drug("blinatumomab") is not None, (path, v)
        for v in (lo - 1, hi + 1):
            _refused(lambda doc: _set(get(doc), v),
                     "%s is not an integer in [%d, %d]" % (v, lo, hi))
        for v in (True, "12", None, 1.5):
            _refused(lambda doc: _set(get(doc), v), "is not an integer")


def test_sr2_the_taken_values_are_the_files():
    lib = _load(lambda doc: _set(_drug(doc)["lockout_s"], 7))
    assert lib.drug("blinatumomab").lockout_s == 7
    lib = _load(lambda doc: _set(_drug(doc)["toxicity_restart"]["restart_grade"], 5))
    assert lib.drug("blinatumomab").tox_restart_grade == 5


def test_sr2_the_toxicity_restart_step_is_one_of_the_regimens_steps():
    steps = len(druglib.load(None, VERSION).drug("blinatumomab").fixed_steps)
    node = _at(("toxicity_restart", "restart_step"))
    assert _load(lambda doc: _set(node(doc), steps - 1)).drug("blinatumomab") \
        .tox_restart_step == steps - 1
    _refused(lambda doc: _set(node(doc), steps), "is not an integer in [0, %d]" % (steps - 1))
    _refused(lambda doc: _set(node(doc), -1), "is not an integer in [0, %d]" % (steps - 1))


def test_sr2_dose_steps_are_non_empty_lists_of_positive_integers_below_2_30():
    for key in ("fixed_steps_ng_per_day", "bsa_steps_ng_per_m2_per_day", "bsa_caps_ng_per_day"):
        def put(v, key=key):
            return lambda doc: _set(_drug(doc)[key], v)
        n = len(druglib.read()["drugs"][0][key]["value"])
        top = (1 << 30) - 1
        assert _load(put([top] * n)).drug("blinatumomab") is not None
        _refused(put([]), "is not a list")
        _refused(put(9000), "9000 is not a list")
        _refused(put([1] * (n - 1) + [0]), "0 is not a positive integer")
        _refused(put([1] * (n - 1) + [1 << 30]), "%d is not a positive integer" % (1 << 30))
        _refused(put([1] * (n - 1) + [True]), "True is not a positive integer")
        _refused(put([1] * (n - 1) + ["9"]), "9 is not a positive integer")


def test_sr2_dose_steps_and_caps_must_pair_up():
    for key in ("fixed_steps_ng_per_day", "bsa_caps_ng_per_day"):
        def shorter(doc, key=key):
            node = _drug(doc)[key]
            node["value"] = node["value"][:-1]
        _refused(shorter, "blinatumomab: steps and caps differ in length")


def test_sr2_a_value_missing_for_the_label_version_is_refused():
    def drop(doc):
        node = _drug(doc)["bags"][2]["rate_ul_per_h"]
        assert "by_label_version" in node
        del node["by_label_version"][VERSION]
    _refused(drop, "no value for label version older")

    def not_a_table(doc):
        node = _drug(doc)["lockout_s"]
        del node["value"]
        node["by_label_version"] = [VERSION, 43200]
    _refused(not_a_table, "no value for label version older")
    try:
        druglib.Library(druglib.read(), "newest")
        raise AssertionError("an unknown label version accepted")
    except ValueError as e:
        assert str(e) == "druglib: unknown label version newest"


def test_sr2_drug_names_and_indices_are_unique_and_the_index_fits_a_byte():
    for index in (1, 255):
        assert _load(lambda doc: _drug(doc).__setitem__("index", index)).drug(
            "blinatumomab").index == index
    for index in (0, 256, -1):
        _refused(lambda doc: _drug(doc).__setitem__("index", index),
                 "drug index %d out of range" % index)
    _refused(lambda doc: _drug(doc).__setitem__("index", "7"), "drug needs a name and an index")
    _refused(lambda doc: _drug(doc).__setitem__("name", 7), "drug needs a name and an index")

    def twin(name, index):
        def mutate(doc):
            other = druglib.read()["drugs"][0]
            other["name"] = name
            other["index"] = index
            doc["drugs"].append(other)
        return mutate
    first = druglib.read()["drugs"][0]
    _refused(twin(first["name"], first["index"] + 1), "duplicate drug blinatumomab")
    _refused(twin("other", first["index"]), "duplicate drug other")
    assert _load(twin("other", first["index"] + 1)).drug("other").index == first["index"] + 1


def test_sr1_a_library_bag_must_deliver_its_volume_at_its_rate_within_1_percent():
    # the 24 h bag: 10 000 µL/h x 24 h = 240 000 µL
    def infused(v):
        return lambda doc: _set(_drug(doc)["bags"][0]["infused_ul"], v)
    assert _load(infused(242424)).drug("blinatumomab").bag(24).infused_ul == 242424
    assert _load(infused(237624)).drug("blinatumomab").bag(24).infused_ul == 237624
    for v in (242425, 237623):
        _refused(infused(v), "blinatumomab 24 h bag: rate x hours != infused volume")


def test_sr2_a_bags_hours_rate_and_volume_are_taken_at_their_edges_and_refused_past_them():
    def bag(hours, rate, infused):
        def mutate(doc):
            b = _drug(doc)["bags"][0]
            b["hours"] = hours
            _set(b["rate_ul_per_h"], rate)
            _set(b["infused_ul"], infused)
        return mutate
    for hours, rate, infused in ((1, 1, 1), (744, 1, 744), (1, 1000000, 1000000),
                                 (10, 1000000, 10000000)):
        got = _load(bag(hours, rate, infused)).drug("blinatumomab").bag(hours)
        assert (got.hours, got.rate_ul_per_h, got.infused_ul) == (hours, rate, infused)
    for hours, rate, infused, words in (
            (0, 1, 1, "0 is not an integer in [1, 744]"),
            (745, 1, 745, "745 is not an integer in [1, 744]"),
            (1, 0, 1, "0 is not an integer in [1, 1000000]"),
            (1, 1000001, 1000001, "1000001 is not an integer in [1, 1000000]"),
            (1, 1, 0, "0 is not an integer in [1, 10000000]"),
            (11, 1000000, 10000001, "10000001 is not an integer in [1, 10000000]")):
        _refused(bag(hours, rate, infused), words)


def test_sr2_bag_lookups_take_whole_hours_only_and_names_only_as_text():
    lib = druglib.load(None, VERSION)
    drug = lib.drug("blinatumomab")
    assert drug.bag(24) is not None and drug.bag(True) is None and drug.bag("24") is None
    assert lib.drug(7) is None and lib.drug("Blinatumomab") is None
    assert drug.bag(24).final_ul is None or drug.bag(24).final_ul > 0


def test_sr9_the_program_flag_bits_keep_their_journalled_meaning():
    """Program.flags is journalled: a bit may never change its meaning between firmware
    versions (an old journal must read the same)."""
    assert (druglib.FLAG_NO_BOLUS, druglib.FLAG_NO_KVO, druglib.FLAG_NO_FLUSH,
            druglib.FLAG_PRESERVATIVE, druglib.FLAG_OVERRIDE) == (1, 2, 4, 8, 16)
    drug = druglib.load(None, VERSION).drug("blinatumomab")
    assert drug.flags == druglib.FLAG_NO_BOLUS | druglib.FLAG_NO_KVO | druglib.FLAG_NO_FLUSH
