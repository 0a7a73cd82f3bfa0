"""SR-13 for the simulator's inputs: every scenario value is checked at the edge. A number
that is not finite or lies outside its documented physical range, a run that would never end
or fill memory, a file that is not UTF-8 text, nesting deeper than a scenario has, a name the
output folder cannot carry: `pumpsim run` and `pumpsim suite` exit 2 with a message naming
the file and the field, never a traceback; and every value inside the ranges runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim import cli, scenario
from sim.scenario import PLANT_INTS, PLANT_RANGES, RANGES, range_text

REPO = Path(__file__).resolve().parents[2]
BASE = """name = "probe"
[patient]
weight_kg = 70.0
[prescription]
drug = "blinatumomab"
dose_ug_per_day = 28.0
bag_hours = 24
[run]
hours = 0.05
"""


def _run(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str | bytes,
         cmd: str = "run") -> tuple[int, str, Path]:
    f = tmp_path / "sc" / "probe.toml"
    f.parent.mkdir(exist_ok=True)
    if isinstance(text, bytes):
        f.write_bytes(text)
    else:
        f.write_text(text, encoding="utf-8")
    argv = ["run", str(f)] if cmd == "run" else \
        ["suite", str(f.parent), "--out", str(tmp_path / "rep"), "--jobs", "1", "--no-plots"]
    rc = cli.main(argv)
    cap = capsys.readouterr()
    return rc, cap.out + cap.err, f


def _with(section: str, line: str) -> str:
    """BASE with `line` set in [section] (replacing the key when BASE has it)."""
    key = line.split("=")[0].strip()
    lines = BASE.splitlines()
    out: list[str] = []
    cur = ""
    done = False
    for ln in lines:
        m = re.match(r"^\[(\w+)\]$", ln)
        if m:
            if cur == section and not done:
                out.append(line)
                done = True
            cur = m.group(1)
        elif cur == section and ln.split("=")[0].strip() == key:
            out.append(line)
            done = True
            continue
        out.append(ln)
    if not done:
        out += (["[%s]" % section] if cur != section else []) + [line]
    return "\n".join(out) + "\n"


# (what, scenario text, the field the message must name)
BAD: list[tuple[str, str | bytes, str]] = [
    # numbers: not finite, or outside the physical range
    ("1e308 kg", _with("patient", "weight_kg = 1e308"), "patient.weight_kg"),
    ("NaN dose", _with("prescription", "dose_ug_per_day = nan"), "prescription.dose_ug_per_day"),
    ("infinite rate", BASE + "[programming]\nrate_ml_per_h = inf\n",
     "programming.rate_ml_per_h"),
    ("-inf VTBI", BASE + "[programming]\nvtbi_ml = -inf\n", "programming.vtbi_ml"),
    ("1e308 fault factor", BASE + '[[faults]]\nat_h = 0.01\nkind = "motor_runaway"\n'
     "factor = 1e308\n", "faults[0].factor"),
    ("negative duration", BASE + '[[faults]]\nat_h = 0.01\nkind = "occlusion"\n'
     "duration_s = -1\n", "faults[0].duration_s"),
    # zero or absurd plant parameters
    ("zero stroke", BASE + "[plant]\nstroke_ul = 0.0\n", "plant.stroke_ul"),
    ("absurd stroke", BASE + "[plant]\nstroke_ul = 1e308\n", "plant.stroke_ul"),
    ("one step a stroke", BASE + "[plant]\nsteps_per_stroke = 1\n", "plant.steps_per_stroke"),
    ("steps not a multiple of the pulses", BASE + "[plant]\nsteps_per_stroke = 202\n",
     "plant.steps_per_stroke"),
    ("1000 pulses a revolution", BASE + "[plant]\npulses_per_rev = 1000\n",
     "plant.pulses_per_rev"),
    ("zero compliance", BASE + "[plant]\ncompliance_ul_per_mmhg = 0.0\n",
     "plant.compliance_ul_per_mmhg"),
    ("venous above the sensor", BASE + "[plant]\nvenous_mmhg = 100.0\n"
     "pressure_threshold_mmhg = 50.0\n", "plant.pressure_threshold_mmhg"),
    ("1e308 free flow", BASE + "[plant]\nfree_flow_ml_per_min = 1e308\n",
     "plant.free_flow_ml_per_min"),
    ("a stall at 0 mmHg", BASE + "[plant]\nstall_mmhg = 0.0\n", "plant.stall_mmhg"),
    # run lengths: bounded
    ("1e9 hours", _with("run", "hours = 1e9"), "run.hours"),
    ("1e9 bags", BASE + "[[steps]]\nrepeat = 1000000000\n", "steps[0].repeat"),
    ("1000 bags twice", BASE + "[[steps]]\nrepeat = 1000\n[[steps]]\nrepeat = 1000\n",
     "steps[1].repeat"),
    ("a plan too long for a run", BASE.replace("hours = 0.05", "seed = 1")
     + "[[steps]]\nbag_hours = 168\nrepeat = 20\n", "run.hours"),
    ("1e9 seed", _with("run", "seed = -1"), "run.seed"),
    ("a sample a millisecond", _with("run", "sample_s = 0.001"), "run.sample_s"),
    ("a million rows", _with("run", "hours = 2000.0") + "sample_s = 1.0\n", "run.sample_s"),
    # text: encoding, control characters, nesting, size
    ("Latin-1 bytes", BASE.replace('"probe"', '"pr\xf6be"').encode("latin-1"), "UTF-8"),
    ("NUL in the name", BASE.replace('"probe"', '"pro\\u0000be"'), "name"),
    ("300-character name", BASE.replace('"probe"', '"%s"' % ("x" * 300)), "name"),
    ("a path as the name", BASE.replace('"probe"', '"../probe"'), "name"),
    ("a name with a slash", BASE.replace('"probe"', '"a/b"'), "name"),
    ("arrays 5000 deep", BASE + "[report]\nx = " + "[" * 5000 + "]" * 5000 + "\n",
     "nested too deeply"),
    ("tables 6 deep", BASE + "[report.a.b.c.d]\nx = 1\n", "report.a.b.c"),
    ("a 2000-entry array", BASE + "[report]\nx = [" + ", ".join(["1"] * 2000) + "]\n",
     "report.x"),
    ("an escape in a description", BASE.replace('name = "probe"',
                                                'name = "probe"\ndescription = "a\\u001bb"'),
     "description"),
    ("a 2 MB file", BASE + "# " + "x" * (2 << 20) + "\n", "KiB"),
]


@pytest.mark.parametrize("what,text,field", BAD, ids=[b[0] for b in BAD])
def test_sr13_pumpsim_run_refuses_bad_input_naming_file_and_field(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], what: str, text: str | bytes,
        field: str) -> None:
    rc, out, f = _run(tmp_path, capsys, text)
    assert rc == 2, out
    assert "Traceback" not in out
    line = out.strip().splitlines()[-1]
    assert line.startswith("pumpsim: %s: " % f), line
    assert field in line, line
    assert len(line) < 400, line


@pytest.mark.parametrize("what,text,field", BAD[::6], ids=[b[0] for b in BAD[::6]])
def test_sr13_pumpsim_suite_refuses_bad_input_and_runs_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], what: str, text: str | bytes,
        field: str) -> None:
    rc, out, f = _run(tmp_path, capsys, text, cmd="suite")
    assert rc == 2 and "Traceback" not in out
    assert "invalid scenario: %s: " % f in out and field in out
    assert not (tmp_path / "rep").exists()


def test_a_byte_order_mark_is_fine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(tmp_path, capsys, b"\xef\xbb\xbf" + BASE.encode())
    assert rc == 0, out


# --- every value inside the documented ranges runs ------------------------------------------

def _in_range(lo: float, hi: float, lo_open: bool) -> st.SearchStrategy[float]:
    inner = st.floats(lo, hi, exclude_min=lo_open, allow_nan=False, allow_infinity=False)
    edges = [x for x in (lo, hi) if not (lo_open and x == lo)]
    return st.one_of(st.sampled_from(edges), inner)


@st.composite
def plants(draw: st.DrawFn) -> dict[str, float | int]:
    names = draw(st.lists(st.sampled_from(sorted(PLANT_RANGES) + sorted(PLANT_INTS)),
                          min_size=1, max_size=6, unique=True))
    out: dict[str, float | int] = {}
    for k in names:
        if k in PLANT_INTS:
            lo, hi, step = PLANT_INTS[k]
            out[k] = draw(st.integers(lo // step, hi // step)) * step
        else:
            out[k] = draw(_in_range(*PLANT_RANGES[k]))
    if out.get("pressure_threshold_mmhg", 300.0) <= out.get("venous_mmhg", 8.0):
        out["pressure_threshold_mmhg"] = float(out.get("venous_mmhg", 8.0)) + 10.0
    return out


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plant=plants(), factor=_in_range(*RANGES["factor"]),
       rate=_in_range(0.01, 200.0, False))
def test_sr13_any_plant_and_fault_inside_the_ranges_runs_without_crashing(
        plant: dict[str, float | int], factor: float, rate: float) -> None:
    """The ranges are what the simulator and the firmware can take: a scenario inside them
    runs to its end (the pump may refuse the program or alarm; nothing raises)."""
    from sim.runner import run_scenario
    text = BASE + "[programming]\nrate_ml_per_h = %r\n[plant]\n%s\n" % (rate, "\n".join(
        "%s = %r" % kv for kv in plant.items())) + \
        '[[faults]]\nat_h = 0.02\nkind = "motor_runaway"\nfactor = %r\n' % factor
    try:
        sc = scenario.loads(text)
    except scenario.ScenarioError as e:       # a cassette the firmware cannot calibrate to
        assert str(e).startswith("plant."), e
        return
    res = run_scenario(sc)
    assert res["sim_hours"] == pytest.approx(0.05)


def test_docs_state_every_range() -> None:
    """docs/scenarios.md gives each field's range as the loader checks it."""
    doc = (REPO / "docs" / "scenarios.md").read_text(encoding="utf-8")
    rows = [ln for ln in doc.splitlines() if ln.startswith("|")]

    def stated(key: str, want: str) -> bool:
        return any("`%s`" % key in ln and want in ln for ln in rows)

    missing = ["%s: %s" % (k, range_text(*r)) for table in (RANGES, PLANT_RANGES)
               for k, r in table.items() if not stated(k, range_text(*r))]
    missing += ["%s: %d ≤ n ≤ %d" % (k, lo, hi) for k, (lo, hi, _s) in PLANT_INTS.items()
                if not stated(k, "%d ≤ n ≤ %d" % (lo, hi))]
    assert not missing, "docs/scenarios.md lacks these ranges: %s" % missing
