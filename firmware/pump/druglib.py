"""The drug library: reads druglib.json (in the pump package) and resolves it for one
label version. Values stay data: nothing clinical is written here (SR-2, docs/drug-library.md).

Each value in the file is {"value": v, "source": s} or, where label versions differ,
{"by_label_version": {version: v, ...}, "verified": false, "source": s}. Loading checks the
library's own consistency and raises ValueError on a bad file: the library is device
configuration, not user input.
"""
import json

NAME = "druglib.json"

# Program.flags bits taken from the library entry (journalled with the program).
FLAG_NO_BOLUS = 1
FLAG_NO_KVO = 2
FLAG_NO_FLUSH = 4
FLAG_PRESERVATIVE = 8     # the bag contains a preservative (benzyl alcohol)
FLAG_OVERRIDE = 16        # a soft limit was overridden by a clinician (SR-2, logged)


def value(node, version):
    """The value of one library node for a label version."""
    if isinstance(node, dict):
        if "value" in node:
            return node["value"]
        alt = node.get("by_label_version")
        if isinstance(alt, dict) and version in alt:
            return alt[version]
    raise ValueError("druglib: no value for label version %s in %s" % (version, node))


def _int(node, version, lo=0, hi=1 << 30):
    v = value(node, version)
    if not isinstance(v, int) or isinstance(v, bool) or not (lo <= v <= hi):
        raise ValueError("druglib: %s is not an integer in [%d, %d]" % (v, lo, hi))
    return v


def _ints(node, version):
    v = value(node, version)
    if not isinstance(v, list) or not v:
        raise ValueError("druglib: %s is not a list" % (v,))
    for x in v:
        if not isinstance(x, int) or isinstance(x, bool) or not (0 < x < (1 << 30)):
            raise ValueError("druglib: %s is not a positive integer" % (x,))
    return tuple(v)


def _opt_int(node, version):
    v = value(node, version)
    return None if v is None else _int(node, version)


class Bag:
    """One bag option: duration, rate, infusible volume, preservative and its weight limit."""

    def __init__(self, d, version):
        self.hours = _int({"value": d["hours"]}, version, 1, 24 * 31)
        self.rate_ul_per_h = _int(d["rate_ul_per_h"], version, 1, 1000000)
        self.infused_ul = _int(d["infused_ul"], version, 1, 10000000)
        self.preservative = value(d["preservative"], version) is True
        self.min_weight_g = _int(d["min_weight_g"], version)
        self.diluent = value(d["diluent"], version)
        self.diluent_ul = _opt_int(d["diluent_ul"], version)
        self.stabilizer_ul = _opt_int(d["stabilizer_ul"], version)
        # Final bag volume when the diluent tops up to it (None: fixed diluent volume).
        self.final_ul = _opt_int(d["final_ul"], version) if "final_ul" in d else None


class Drug:
    """One drug entry, resolved for a label version."""

    def __init__(self, d, version):
        self.name = d["name"]
        self.index = d["index"]
        if not isinstance(self.name, str) or not isinstance(self.index, int):
            raise ValueError("druglib: drug needs a name and an index")
        if not (0 < self.index < 256):
            raise ValueError("druglib: drug index %d out of range" % self.index)
        f = 0
        if value(d["no_bolus"], version) is True:
            f |= FLAG_NO_BOLUS
        if value(d["no_kvo"], version) is True:
            f |= FLAG_NO_KVO
        if value(d["no_flush"], version) is True:
            f |= FLAG_NO_FLUSH
        self.flags = f
        self.lockout_s = _int(d["lockout_s"], version)
        self.pause_reminder_s = _int(d["pause_reminder_s"], version, 1)
        self.adult_min_weight_g = _int(d["adult_min_weight_g"], version)
        self.fixed_steps = _ints(d["fixed_steps_ng_per_day"], version)
        self.bsa_steps = _ints(d["bsa_steps_ng_per_m2_per_day"], version)
        self.bsa_caps = _ints(d["bsa_caps_ng_per_day"], version)
        n = len(self.bsa_steps)
        if len(self.bsa_caps) != n or len(self.fixed_steps) != n:
            raise ValueError("druglib: %s: steps and caps differ in length" % self.name)
        self.dose_min_ng_per_day = _int(d["dose_min_ng_per_day"], version, 1)
        self.max_overfill_pct = _int(d["max_overfill_pct"], version, 0, 1000)
        v = d["vial"]
        self.vial_ug = _int(v["ug"], version, 1)
        self.vial_water_ul = _int(v["water_ul"], version, 1)
        self.vial_conc_ng_per_ml = _int(v["conc_ng_per_ml"], version, 1)
        self.vial_withdrawable_ul = _int(v["withdrawable_ul"], version, 1)
        self.bags = {}
        for b in d["bags"]:
            bag = Bag(b, version)
            # SR-1 holds for the library itself: rate x duration = infusible volume within 1 %.
            diff = bag.rate_ul_per_h * bag.hours - bag.infused_ul
            if diff < 0:
                diff = -diff
            if diff * 100 > bag.infused_ul:
                raise ValueError("druglib: %s %d h bag: rate x hours != infused volume"
                                 % (self.name, bag.hours))
            self.bags[bag.hours] = bag
        self.regimens = d.get("regimens", {})
        self.infusion_days = _int(d["infusion_days"], version, 1, 366)
        self.interruption_continue_max_s = _int(d["interruption_continue_max_s"], version)
        self.interruption_premed_s = _int(d["interruption_premed_s"], version)
        t = d["toxicity_restart"]
        self.tox_restart_step = _int(t["restart_step"], version, 0, len(self.fixed_steps) - 1)
        self.tox_escalate_after_days = _int(t["escalate_after_days"], version, 0, 366)
        self.tox_restart_grade = _int(t["restart_grade"], version, 1, 5)
        self.tox_discontinue_grade = _int(t["discontinue_grade"], version, 1, 5)
        c = d["patient_checks"]
        # (BMI low, BMI high kg/m², weight change % needing a clinician's confirmation)
        self.checks = (_int(c["bmi_min_kg_per_m2"], version, 1, 1000),
                       _int(c["bmi_max_kg_per_m2"], version, 1, 1000),
                       _int(c["weight_change_max_pct"], version, 0, 1000))
        c = d["restart_rules"]
        self.bag_hang_tolerance_s = _int(c["bag_hang_tolerance_s"], version)
        self.plan_day_slack_s = _int(c["plan_day_slack_s"], version, 0, 86400)

    def bag(self, hours):
        """The bag option of that duration, or None when the library does not offer it."""
        if not isinstance(hours, int) or isinstance(hours, bool):
            return None
        return self.bags.get(hours)

    def dose_cap_ng_per_day(self):
        cap = 0
        for c in self.fixed_steps + self.bsa_caps:
            if c > cap:
                cap = c
        return cap


class Library:
    """All drugs of a library file, resolved for one label version."""

    def __init__(self, doc, label_version=None):
        versions = doc.get("label_versions", {})
        if label_version is None:
            label_version = doc.get("default_label_version")
        if label_version not in versions:
            raise ValueError("druglib: unknown label version %s" % (label_version,))
        self.label_version = label_version
        self.versions = tuple(sorted(versions))
        self.drugs = {}
        self.by_index = {}
        for d in doc["drugs"]:
            drug = Drug(d, label_version)
            if drug.name in self.drugs or drug.index in self.by_index:
                raise ValueError("druglib: duplicate drug %s" % drug.name)
            self.drugs[drug.name] = drug
            self.by_index[drug.index] = drug

    def drug(self, name):
        """The drug entry by name, or None (names are compared exactly, lower case)."""
        if not isinstance(name, str):
            return None
        return self.drugs.get(name)


def path():
    """Where druglib.json lives: beside this module, in the pump package (on a board
    /pump/druglib.json; on the host wherever the pump package is, checkout or install)."""
    try:
        f = __file__
    except NameError:
        return NAME
    i = f.rfind("druglib")
    if i < 0:
        return NAME
    return f[:i] + NAME


def read(p=None):
    """The library document as parsed JSON (sources included)."""
    with open(p or path()) as f:
        return json.load(f)


def load(p=None, label_version=None):
    return Library(read(p), label_version)


_default = None  # type: Library | None


def default():
    """The library from the default file and default label version, loaded once."""
    global _default
    if _default is None:
        _default = load()
    return _default


def unverified(doc, version):
    """(path, value, source) of every value marked "verified": false, for sheets and docs."""
    out = []
    _walk(doc, "", version, out)
    return out


def _walk(node, where, version, out):
    if isinstance(node, dict):
        if node.get("verified") is False:
            try:
                v = value(node, version)
            except ValueError:
                v = None
            out.append((where, v, node.get("source", "")))
            return
        for k in node:
            _walk(node[k], where + "/" + str(k), version, out)
    elif isinstance(node, list):
        i = 0
        for x in node:
            key = str(i)
            if isinstance(x, dict) and "hours" in x:
                key = "%dh" % x["hours"]
            elif isinstance(x, dict) and "name" in x:
                key = str(x["name"])
            _walk(x, where + "/" + key, version, out)
            i += 1
