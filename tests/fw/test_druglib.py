"""The drug library as data (issue 3, SR-2): every value sourced, label versions selectable."""
from pump import druglib

BLIN = "blinatumomab"


def _values(node, where, out):
    """Every leaf value node ({value|by_label_version, source}) under node."""
    if isinstance(node, dict):
        if "value" in node or "by_label_version" in node:
            out.append((where, node))
            return
        for k in node:
            _values(node[k], where + "/" + str(k), out)
    elif isinstance(node, list):
        i = 0
        for x in node:
            _values(x, where + "/" + str(i), out)
            i += 1


def test_every_value_has_a_source():
    doc = druglib.read()
    drug = doc["drugs"][0]
    found = []
    for k in drug:
        if k not in ("name", "index", "source", "regimens"):
            _values(drug[k], k, found)
    assert len(found) > 40, len(found)
    for where, node in found:
        src = node.get("source")
        assert isinstance(src, str) and len(src) > 5, where
        if "by_label_version" in node:
            # values that differ between label versions are unverified and list every version
            assert node.get("verified") is False, where
            assert sorted(node["by_label_version"]) == sorted(doc["label_versions"]), where
    for name in doc["drugs"][0]["regimens"]:
        assert len(drug["regimens"][name]["source"]) > 5
    for v in doc["label_versions"].values():
        assert len(v["source"]) > 5


def test_label_version_selects_values():
    older = druglib.load(label_version="older")
    current = druglib.load(label_version="current")
    assert older.label_version == "older" and current.label_version == "current"
    o = older.drug(BLIN)
    c = current.drug(BLIN)
    assert (o.bags[72].rate_ul_per_h, o.bags[96].rate_ul_per_h) == (3300, 2500)
    assert (c.bags[72].rate_ul_per_h, c.bags[96].rate_ul_per_h) == (1800, 1800)
    assert o.bags[168].min_weight_g == 22000 and c.bags[168].min_weight_g == 5400
    # values that do not differ are the same
    for h in (24, 48, 168):
        assert o.bags[h].rate_ul_per_h == c.bags[h].rate_ul_per_h
        assert o.bags[h].infused_ul == c.bags[h].infused_ul
    # default: the file's default version
    assert druglib.default().label_version == druglib.read()["default_label_version"]
    try:
        druglib.load(label_version="2099")
        raise AssertionError("unknown label version accepted")
    except ValueError:
        pass


def test_blinatumomab_entry():
    d = druglib.default().drug(BLIN)
    assert sorted(d.bags) == [24, 48, 72, 96, 168]
    assert (d.bags[24].rate_ul_per_h, d.bags[24].infused_ul) == (10000, 240000)
    assert (d.bags[48].rate_ul_per_h, d.bags[48].infused_ul) == (5000, 240000)
    assert (d.bags[168].rate_ul_per_h, d.bags[168].infused_ul) == (600, 100800)
    assert d.bags[24].diluent_ul == 270000          # overfill: 270 mL for 240 mL infused
    assert not d.bags[24].preservative and not d.bags[48].preservative
    assert d.bags[72].preservative and d.bags[96].preservative and d.bags[168].preservative
    assert d.fixed_steps == (9000, 28000)
    assert d.bsa_steps == (5000, 15000) and d.bsa_caps == (9000, 28000)
    assert d.adult_min_weight_g == 45000
    assert d.lockout_s == 12 * 3600
    assert 0 < d.pause_reminder_s < 4 * 3600
    f = druglib.FLAG_NO_BOLUS | druglib.FLAG_NO_KVO | druglib.FLAG_NO_FLUSH
    assert d.flags & f == f
    assert (d.vial_ug, d.vial_water_ul, d.vial_conc_ng_per_ml) == (35, 3000, 12500)
    assert d.dose_cap_ng_per_day() == 28000
    assert druglib.default().drug("heparin") is None
    assert druglib.default().drug(None) is None
    assert d.bag(36) is None and d.bag("24") is None and d.bag(True) is None


def test_unverified_values_are_listed():
    doc = druglib.read()
    rows = druglib.unverified(doc, "older")
    where = [r[0] for r in rows]
    assert "/drugs/blinatumomab/bags/72h/rate_ul_per_h" in where
    assert "/drugs/blinatumomab/bags/168h/min_weight_g" in where
    for w, v, src in rows:
        assert src, w
    vals = dict((r[0], r[1]) for r in druglib.unverified(doc, "current"))
    assert vals["/drugs/blinatumomab/bags/72h/rate_ul_per_h"] == 1800


def test_inconsistent_library_refused():
    doc = druglib.read()
    doc["drugs"][0]["bags"][0]["infused_ul"] = {"value": 250000, "source": "x"}
    try:
        druglib.Library(doc, "older")
        raise AssertionError("rate x hours != infused volume accepted")
    except ValueError:
        pass
    doc = druglib.read()
    doc["drugs"][0]["lockout_s"] = {"value": "12h", "source": "x"}
    try:
        druglib.Library(doc, "older")
        raise AssertionError("non-integer accepted")
    except ValueError:
        pass
