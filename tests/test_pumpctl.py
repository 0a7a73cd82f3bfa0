"""pumpctl as a nurse, a pharmacist or a script meets it: options before or after the command,
the confirm step at human speed on a 100x virtual board, refusals that say what they mean and
what to do, the echo in the label's units, exit codes and JSON errors as documented
(docs/pumpctl.md), and every bad input refused at the edge with exit 2 (never a traceback)."""

from __future__ import annotations

import argparse
import io
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hil.bridge import VirtualBoard
from hil.rig import Rig
from host import cli, refusals, units
from host.client import Frame
from host.errors import PumpRefused, UsageError
from host.pharmacy import preparation

REPO = Path(__file__).resolve().parents[1]
CHECK_FORM = re.compile(r"^[0-9A-Z]{3}-[0-9A-Z]{3}$")


@pytest.fixture(scope="module")
def vboard() -> Iterator[VirtualBoard]:
    with VirtualBoard("virtual", accel=100) as vb:
        yield vb


@pytest.fixture(scope="module")
def keys(vboard: VirtualBoard, tmp_path_factory: pytest.TempPathFactory) -> str:
    kf = str(tmp_path_factory.mktemp("keys") / "keys.json")
    assert cli.main(["--keys", kf, "keys", "generate"]) == 0
    assert cli.main(["--port", vboard.uart_path, "--keys", kf, "keys", "provision"]) == 0
    return kf


def run(capsys: pytest.CaptureFixture[str], *argv: str, stdin: Any = None,
        monkeypatch: pytest.MonkeyPatch | None = None) -> tuple[int, str, str]:
    capsys.readouterr()
    if stdin is not None:
        assert monkeypatch is not None
        monkeypatch.setattr(sys, "stdin", stdin)
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def to_idle(capsys: pytest.CaptureFixture[str], base: list[str]) -> None:
    for _ in range(4):
        rc, out, _ = run(capsys, *base, "--json", "status")
        s = json.loads(out)["state"]
        if s == "IDLE":
            return
        step = {"RUNNING": "stop", "PAUSED": "stop", "ALARM": "stop", "PROGRAMMED": "clear",
                "COMPLETE": "clear", "LOCKOUT": "override", "SERVICE": "exit-service"}[s]
        run(capsys, *base, step, *(["--as", "clinician"] if step == "stop" else []))


def bench(capsys: pytest.CaptureFixture[str], base: list[str]) -> None:
    """From IDLE into service mode, where the pump takes a basic (rate/VTBI) program."""
    assert run(capsys, *base, "service")[0] == 0


@pytest.fixture
def bag(tmp_path: Path) -> Path:
    p = tmp_path / "bag.json"
    p.write_text(json.dumps(preparation("blinatumomab", "70", "175", dose_ug_per_day="28",
                                        bag_hours=24, cycle=2, day=1)))
    return p


class SlowTyping(io.StringIO):
    """An operator who reads the echo, then types after `delay_s` of wall-clock time."""

    def __init__(self, text: str, delay_s: float) -> None:
        super().__init__(text)
        self.delay_s = delay_s

    def readline(self, *a: Any) -> str:  # type: ignore[override]
        time.sleep(self.delay_s)
        return super().readline(*a)


# --- options before or after the command ---------------------------------------------------------

@pytest.mark.parametrize("before, after", [
    (["--json", "--port", "/dev/x", "status"], ["status", "--json", "--port", "/dev/x"]),
    (["--json", "watch", "--count", "2"], ["watch", "--count", "2", "--json"]),
    (["-p", "/dev/x", "--keys", "k.json", "program", "b.json"],
     ["program", "b.json", "--keys", "k.json", "-p", "/dev/x"]),
    (["--port", "/dev/x", "--timeout", "2", "flash", "--dry-run"],
     ["flash", "--dry-run", "--timeout", "2", "--port", "/dev/x"]),
    (["--json", "rx", "--weight-kg", "70", "--height-cm", "175"],
     ["rx", "--weight-kg", "70", "--height-cm", "175", "--json"]),
])
def test_options_work_before_or_after_the_command(before: list[str], after: list[str]) -> None:
    p = cli.parser()
    rest = ["--dose-ug-per-day", "28", "--bag-hours", "24", "--cycle", "2", "--day", "1"] \
        if "rx" in before else []
    a = vars(p.parse_args(before + rest))
    b = vars(p.parse_args(after + rest))
    a.pop("fn"), b.pop("fn")
    assert a == b


def test_an_option_after_the_command_does_not_undo_one_before() -> None:
    a = cli.parser().parse_args(["--port", "/dev/a", "--json", "status", "--timeout", "3"])
    assert (a.port, a.json, a.timeout) == ("/dev/a", True, 3.0)


# --- the confirm step (SR-3) at human speed ------------------------------------------------------

def test_sr3_confirm_at_human_speed_on_a_100x_virtual_board(
        vboard: VirtualBoard, keys: str, bag: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The README step: the operator reads the echo and types yes 3 s later (300 s of the
    board's clock): still inside the 120 s wall-clock window."""
    base = ["--port", vboard.uart_path, "--keys", keys]
    to_idle(capsys, base)
    rc, out, err = run(capsys, *base, "program", str(bag), stdin=SlowTyping("yes\n", 3.0),
                       monkeypatch=monkeypatch)
    assert rc == 0, err
    assert "Confirm these values? Type 'yes' within 120 s" in err      # the prompt: stderr
    assert "state PROGRAMMED" in out


def test_sr3_expired_or_missing_proposal_says_so() -> None:
    for code, words in (("PROPOSAL_EXPIRED", "window"), ("NO_PROPOSAL", "no proposal")):
        lines = cli.advice(PumpRefused("CONFIRM", code, role="clinician"))
        assert words in lines[0] and "program again" in lines[1]


class LapsingPump:
    """Stands in for PumpClient in `program`: echoes, then refuses the confirm as a pump does
    after its window (PROPOSAL_EXPIRED) and programs nothing."""

    def __init__(self) -> None:
        self.confirmed = False

    def __enter__(self) -> LapsingPump:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def status(self) -> dict[str, Any]:
        return {"state": "SERVICE", "mode": "SERVICE"}     # a bench program: service mode

    def propose_basic(self, rate: str, vtbi: str) -> dict[str, Any]:
        return {"echo": ["-", 60000, 1000], "expires_s": 120}

    def confirm(self, echo: list[Any], role: str = "clinician") -> dict[str, Any]:
        raise PumpRefused("CONFIRM", "PROPOSAL_EXPIRED", role="clinician")


def test_sr3_a_late_yes_is_refused_saying_how_late_and_nothing_is_programmed(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The operator answers after the pump's window: pumpctl says the proposal expired, how
    long after the echo the answer came, what the window is, and to program again (exit 1)."""
    pump = LapsingPump()
    monkeypatch.setattr(cli, "connect", lambda args, need_keys=False: pump)
    rc, out, err = run(capsys, "program", "--rate", "60 mL/h", "--vtbi", "1 mL",
                       stdin=SlowTyping("yes\n", 0.2), monkeypatch=monkeypatch)
    assert rc == 1 and "programmed" not in out
    assert "CONFIRM refused: PROPOSAL_EXPIRED" in err and "nothing was programmed" in err
    assert re.search(r"here: 'yes' came \d+ s after the pump's echo; the window is 120 s", err)
    assert "program again" in err


def test_json_program_without_yes_keeps_stdout_json(
        vboard: VirtualBoard, keys: str, bag: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    base = ["--port", vboard.uart_path, "--keys", keys]
    to_idle(capsys, base)
    rc, out, err = run(capsys, *base, "--json", "program", str(bag),
                       stdin=io.StringIO("yes\n"), monkeypatch=monkeypatch)
    assert rc == 0, err
    d = json.loads(out)                                   # stdout is the one JSON object
    assert d["state"] == "PROGRAMMED" and d["echo"][1] == 10000
    # the operator saw what the pump echoed before confirming, on stderr
    assert "rate 10 mL/h  VTBI 240 mL  dose 28 ug/day  conc 116.667 ng/mL" in err
    assert err.index("conc 116.667") < err.index("Confirm these values?")
    # declining changes nothing and is JSON too
    rc, out, _ = run(capsys, *base, "--json", "program", "--rate", "5 mL/h", "--vtbi", "2 mL",
                     stdin=io.StringIO("no\n"), monkeypatch=monkeypatch)
    assert rc == 1 and json.loads(out)["ok"] is False
    assert json.loads(run(capsys, *base, "--json", "status")[1])["rate_ul_per_h"] == 10000


def test_echo_and_label_show_the_same_numbers_in_the_same_units(
        vboard: VirtualBoard, keys: str, bag: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What the nurse compares: the printed label and the pump's echo, number for number."""
    rc, sheet, _ = run(capsys, "rx", "--weight-kg", "70", "--height-cm", "175",
                       "--dose-ug-per-day", "28", "--bag-hours", "24", "--cycle", "2",
                       "--day", "1")
    base = ["--port", vboard.uart_path, "--keys", keys]
    to_idle(capsys, base)
    rc, out, err = run(capsys, *base, "program", str(bag), "--yes")
    assert rc == 0, err
    label = json.loads(bag.read_text())["label"]
    assert CHECK_FORM.match(label["check"])
    for text in ("10 mL/h", "240 mL", "28 ug/day", "116.667 ng/mL", label["check"]):
        assert text in sheet and text in out, text
    assert "ug/mL" not in out.replace("12.5 ug/mL", "")


# --- refusals in words ---------------------------------------------------------------------------

def test_sr11_refusals_name_the_code_its_meaning_and_what_to_do(
        vboard: VirtualBoard, keys: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--port", vboard.uart_path, "--keys", keys]
    to_idle(capsys, base)
    bench(capsys, base)
    assert run(capsys, *base, "program", "--rate", "60 mL/h", "--vtbi", "10 mL", "--yes")[0] == 0
    assert run(capsys, *base, "start")[0] == 0
    rig = Rig(vboard.rig_path)
    try:
        rig.door(False)                                   # the cassette door opens: ALARM
        deadline = time.monotonic() + 10
        while json.loads(run(capsys, *base, "--json", "status")[1])["state"] != "ALARM":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        rig.door(True)
    finally:
        rig.close()
    rc, out, _ = run(capsys, *base, "ack")
    assert rc == 0 and "alarm sound silenced" in out and "DOOR_OPEN" in out
    assert "what to do" not in out and "What to do: close the door" in out
    # a second ack: nothing was sounding any more, and it says so
    rc, out, _ = run(capsys, *base, "ack")
    assert rc == 0 and out.startswith("ack: no alarm was sounding (the DOOR_OPEN alarm was "
                                      "acknowledged before); state ALARM")
    assert "ALARM DOOR_OPEN (silenced)" in run(capsys, *base, "status")[1]
    # a patient may not resume after an alarm: the refusal says to use the clinician role
    rc, _, err = run(capsys, *base, "resume")
    assert rc == 1 and "RESUME refused: NOT_AUTHORISED" in err
    assert "resume --as clinician" in err and "docs/codes.md" in err
    # the clinician's key from the wrong file: the refusal says so
    wrong = str(tmp_path / "other.json")
    assert run(capsys, "--keys", wrong, "keys", "generate")[0] == 0
    rc, _, err = run(capsys, "--port", vboard.uart_path, "--keys", wrong, "resume", "--as",
                     "clinician")
    assert rc == 1 and "not the key file this pump was provisioned with" in err
    assert run(capsys, *base, "resume", "--as", "clinician")[0] == 0
    # a rate in another unit: the refusal says rates are mL/h
    to_idle(capsys, base)
    bench(capsys, base)
    rc, _, err = run(capsys, *base, "program", "--rate", "240 mL/24h", "--vtbi", "240 mL",
                     "--yes")
    assert rc == 1 and "UNIT_REJECTED" in err and "mL/h only" in err
    assert "here: the rate was keyed as '240 mL/24h'; the pump takes a rate in mL/h only" in err
    # under --json, the same as fields
    rc, out, _ = run(capsys, *base, "--json", "program", "--rate", "240 mL/24h", "--vtbi",
                     "240 mL", "--yes")
    d = json.loads(out)
    assert rc == 1 and d["code"] == "UNIT_REJECTED" and "mL/h" in d["next"] and d["exit"] == 1
    assert "'240 mL/24h'" in d["here"]
    # a command the state does not take: the refusal names the state
    assert run(capsys, *base, "exit-service")[0] == 0
    rc, _, err = run(capsys, *base, "stop")
    assert rc == 1 and "INVALID_STATE" in err and "here: the pump is IDLE" in err


@pytest.mark.parametrize("argv, here", [
    (["--weight-kg", "20", "--height-cm", "115", "--dose-ug-per-day", "28"],
     "a patient under 45 kg is dosed by body surface: give --dose-ug-per-m2-per-day"),
    (["--weight-kg", "70", "--height-cm", "170", "--dose-ug-per-m2-per-day", "5"],
     "a patient of 45 kg or more has a fixed dose: give --dose-ug-per-day"),
])
def test_sr2_rx_dose_in_the_wrong_unit_for_the_weight_says_which_to_give(
        argv: list[str], here: str, capsys: pytest.CaptureFixture[str]) -> None:
    plan = ["--cycle", "1", "--day", "1"]
    rc, out, err = run(capsys, "rx", *argv, "--bag-hours", "24", *plan)
    assert rc == 1 and out == "" and "UNIT_REJECTED" in err and "here: " + here in err
    rc, out, _ = run(capsys, "rx", *argv, "--bag-hours", "24", *plan, "--json")
    assert rc == 1 and json.loads(out)["here"].startswith(here)


def test_explain_lists_every_code_and_refuses_unknown_ones(
        capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "explain")
    assert rc == 0 and all(f"{c}:" in out for c in refusals.REFUSALS)
    rc, out, _ = run(capsys, "--json", "explain", "unit_rejected")
    assert rc == 0 and "mL/h" in json.loads(out)["UNIT_REJECTED"]["next"]
    rc, out, _ = run(capsys, "explain", "NO_SUCH_CODE", "--json")
    assert rc == 2 and json.loads(out)["exit"] == 2


# --- exit codes and errors as documented ---------------------------------------------------------

def test_exit_codes_and_json_errors_match_the_docs(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    bad_keys = tmp_path / "keys.json"
    bad_keys.write_text("{not json")
    rx = ["rx", "--height-cm", "175", "--dose-ug-per-day", "28", "--bag-hours", "24",
          "--cycle", "2", "--day", "1"]
    cases: list[tuple[list[str], int]] = [
        (["--keys", str(bad_keys), "keys", "show"], 2),           # a malformed key file
        ([*rx, "--weight-kg", "abc"], 2),                           # a bad number
        ([*rx, "--weight-kg", "70", "--dose-ug-per-m2-per-day", "5"], 2),  # two doses
        ([*rx[:3], "--weight-kg", "70", "--dose-ug-per-day", "30", *rx[5:]], 1),  # the cap
        (["--port", "", "status"], 2),
        (["status", "--timeout", "0"], 2),
        (["frobnicate"], 2),
        (["--port", "/dev/no-such-pump", "--timeout", "0.1", "status"], 3),
    ]
    for argv, want in cases:
        rc, out, err = run(capsys, *argv)
        assert rc == want, (argv, err)
        assert "Traceback" not in err and out == "", argv
        assert err.startswith(("pumpctl:", "usage:")), (argv, err)
        rc, out, err = run(capsys, *argv, "--json")                   # the same under --json
        d = json.loads(out)
        assert rc == want and d["ok"] is False and d["exit"] == want and d["error"], argv
        assert err == "", argv
    text = " ".join((REPO / "docs" / "pumpctl.md").read_text().split())
    assert "2 bad arguments, a bad input file, a bad key file" in text


def test_pumpctl_version_names_the_commit_and_firmware(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "--version")
    assert rc == 0 and out.startswith("pumpctl ") and "firmware sha256 " in out
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"],
                            capture_output=True, text=True, check=False).stdout.strip()
    if commit:
        assert f"commit {commit}" in out


# --- every input validated at its edge (SR-13 on the host side) ----------------------------------

@pytest.mark.parametrize("value", ["1e308", "NaN", "Infinity", "-inf", "700", "0", "-70", "",
                                   " ", "70kg", "7" * 40, "1/0", "0x46"])
def test_sr13_rx_weight_out_of_range_or_not_a_number_is_exit_2(
        value: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "rx", f"--weight-kg={value}", "--height-cm", "175",
                       "--dose-ug-per-day", "28", "--bag-hours", "24", "--cycle", "2",
                       "--day", "1")
    assert rc == 2 and out == "" and "--weight-kg" in err and "0.5 to 350" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("option, value", [
    ("--dose-ug-per-day", "1e308"), ("--dose-ug-per-day", "nan"), ("--dose-ug-per-day", ""),
    ("--height-cm", "Infinity"), ("--height-cm", "2600"), ("--bag-hours", "1e9"),
    ("--bag-hours", ""), ("--override", "-1"), ("--override", "99999999999"),
])
def test_sr13_rx_other_numbers_are_exit_2(option: str, value: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    argv = {"--weight-kg": "70", "--height-cm": "175", "--dose-ug-per-day": "28",
            "--bag-hours": "24", "--cycle": "2", "--day": "1"}
    argv[option] = value
    rc, out, err = run(capsys, "rx", *[f"{k}={v}" for k, v in argv.items()])
    assert rc == 2 and out == "" and option in err and "Traceback" not in err


def _program_file(tmp_path: Path, name: str, data: bytes) -> str:
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


LABEL = preparation("blinatumomab", "70", "175", dose_ug_per_day="28", bag_hours=24, cycle=2,
                    day=1)["label"]


@pytest.mark.parametrize("name, data, words", [
    ("bag.json", json.dumps({"label": LABEL}).replace("70000", "Infinity").encode(),
     "Infinity"),
    ("bag.json", json.dumps({"label": LABEL}).replace("70000", "NaN").encode(), "NaN"),
    ("bag.json", json.dumps({"label": LABEL}).replace("70000", "70000.5").encode(),
     "label.weight_g"),
    ("bag.json", json.dumps({"label": dict(LABEL, weight_g=10 ** 400)}).encode(),
     "label.weight_g"),
    ("bag.json", json.dumps({"label": [1, 2]}).encode(), "no bag label"),
    ("bag.json", json.dumps({"label": dict(LABEL, drug=["x"])}).encode(), "label.drug"),
    ("bag.json", json.dumps({"label": {k: v for k, v in LABEL.items() if k != "conc_pg_per_ml"}
                             }).encode(), "conc_pg_per_ml"),
    ("bag.json", json.dumps({"label": LABEL, "entry": "10 mL/h"}).encode(), "[entry]"),
    ("bag.json", json.dumps({"label": LABEL, "entry": {"rate": ""}}).encode(), "entry.rate"),
    ("bag.json", json.dumps({"label": LABEL, "entry": {"rate": {"x": 1}}}).encode(),
     "entry.rate"),
    ("bag.json", json.dumps({"label": LABEL, "entry": {"speed": "10"}}).encode(),
     "entry.speed"),
    ("bag.json", json.dumps([LABEL]).encode(), "table/object"),
    ("bag.json", b"[" * 100000 + b"]" * 100000, "bag.json"),
    ("bag.json", b'{"a":' * 50 + b"1" + b"}" * 50, "nested"),
    ("bag.json", b"[" * 990 + b"]" * 990, "bag.json"),
    ("bag.json", "{\"label\": {\"drug\": \"bl\u00efnatumomab\"}}".encode("latin-1"), "UTF-8"),
    ("bag.json", b"\xff\xfe{}", "UTF-8"),
    ("bag.json", b"", "not valid JSON"),
    ("bag.toml", b"a = " + b"[" * 100000 + b"]" * 100000, "bag.toml"),
    ("bag.toml", b"[label]\nweight_g = inf\n", "label"),
    ("bag.toml", b"[basic]\nrate = \"\"\nvtbi = \"1 mL\"\n", "basic.rate"),
])
def test_sr13_bad_program_files_are_exit_2_naming_file_and_field(
        tmp_path: Path, name: str, data: bytes, words: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    f = _program_file(tmp_path, name, data)
    rc, out, err = run(capsys, "--port", "", "program", f, "--yes")
    assert rc == 2 and out == "" and "Traceback" not in err, err
    assert name in err and words in err, err


@pytest.mark.parametrize("argv, words", [
    (["--rate", ""], "--rate"),
    (["--rate", " ", "--vtbi", "1 mL"], "--rate"),
    (["--vtbi", "\x00"], "--vtbi"),
])
def test_sr13_empty_or_unprintable_rate_is_exit_2(tmp_path: Path, argv: list[str], words: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    f = _program_file(tmp_path, "bag.json", json.dumps({"label": LABEL}).encode())
    rc, out, err = run(capsys, "--port", "", "program", f, *argv)
    assert rc == 2 and words in err and "Traceback" not in err
    rc, out, err = run(capsys, "--port", "", "program", *argv, *(
        ["--vtbi", "1 mL"] if "--vtbi" not in argv else ["--rate", "1 mL/h"]))
    assert rc == 2 and "Traceback" not in err


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=300), st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["label", "entry", "basic", "check", "rate", "vtbi", "drug",
                         "weight_g", "vtbi_ml", "unit"]) | st.text(max_size=5), inner,
        max_size=5), max_leaves=30).map(lambda v: json.dumps(v).encode())))
def test_sr13_any_program_file_is_a_program_or_a_usage_error(tmp_path: Path,
                                                             data: bytes) -> None:
    """Whatever the file holds, reading it gives a request or a UsageError naming the file:
    never another exception."""
    f = _program_file(tmp_path, "any.json", data)
    try:
        kind, req = cli.program_request(cli.load_doc(f), None, None, f)
    except UsageError as e:
        assert "any.json" in str(e)
        return
    assert kind in ("basic", "label")
    json.dumps(req)                                   # what goes to the pump is plain JSON


# --- watch ----------------------------------------------------------------------------------------

class FakePump:
    """Stands in for PumpClient in `watch`: a fixed stream of telemetry."""

    def __init__(self, frames: list[Frame]) -> None:
        self.frames = frames
        self.periods: list[int] = []

    def __enter__(self) -> FakePump:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def watch(self, period: int) -> dict[str, Any]:
        self.periods.append(period)
        return {"period_s": period}

    def iter_events(self) -> Iterator[Frame]:
        yield from self.frames


def _tlm(delivered_nl: int) -> Frame:
    return Frame("*", "TLM", {"state": "RUNNING", "rate_ul_per_h": 10000,
                              "vtbi_nl": 240000000, "commanded_nl": delivered_nl,
                              "rtc_s": 800000000}, b"")


def _evt(kind: str, code: str, value: int) -> Frame:
    return Frame("*", "EVT", {"kind": kind, "code": code, "value": value, "dropped": 0}, b"")


def test_watch_count_counts_telemetry_frames_and_lines_are_stamped(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    frames = [_tlm(0), _evt("state", "ALARM", 6164000), _evt("alarm", "OCCLUSION", 0),
              _tlm(6164000), _tlm(6164000), _tlm(6164000)]
    pump = FakePump(frames)
    monkeypatch.setattr(cli, "connect", lambda args, need_keys=False: pump)
    rc, out, _ = run(capsys, "watch", "--period", "300", "--count", "3")
    lines = out.splitlines()
    assert rc == 0 and len(lines) == 5 and sum(" TLM " in x for x in lines) == 3
    assert all(re.match(r"^\d\d:\d\d:\d\d  (TLM|EVT) ", x) for x in lines)
    assert "EVT state ALARM (volume counted as delivered so far: 6.164 mL)" in lines[1]
    assert "EVT alarm OCCLUSION: downstream pressure too high" in lines[2]
    assert "pump clock 2025-05-08 06:13:20" in lines[0]
    assert pump.periods == [300, 0]                  # telemetry switched off afterwards
    rc, out, _ = run(capsys, "watch", "--count", "1", "--json")
    d = json.loads(out.splitlines()[0])
    assert d["kind"] == "TLM" and "host_time" in d


# --- start-up cost and hygiene -------------------------------------------------------------------

@pytest.mark.parametrize("tool", ["host.cli", "sim.cli"])
def test_help_imports_no_numpy_matplotlib_or_hil(tool: str) -> None:
    code = (f"import sys; from {tool} import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'matplotlib', "
            "'hil', 'plant'}))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=REPO, check=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "[]", p.stdout


def test_pumpsim_help_lists_each_subcommand_as_its_module_describes_it() -> None:
    from sim import cli as sim_cli

    for name in sim_cli.SUBCOMMANDS:
        p = sim_cli.build_parser([name])
        sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        helps = {c.dest: c.help for c in sub._choices_actions}
        assert helps[name] == sim_cli.SUBCOMMANDS[name][1], name


def test_no_tracked_file_is_listed_in_gitignore() -> None:
    p = subprocess.run(["git", "-C", str(REPO), "ls-files", "-ci", "--exclude-standard"],
                       capture_output=True, text=True, check=False)
    if p.returncode != 0:
        pytest.skip(f"not a git checkout: {p.stderr.strip()}")
    assert p.stdout == "", f".gitignore lists tracked files:\n{p.stdout}"


# Documents outside the repository (the project's specification, design and style notes are
# not shipped): cited by name or section, e.g. "SPEC §2", "DESIGN.md", "SPEC SR-2".
OUTSIDE = re.compile(r"\b(SPEC|DESIGN|STYLE|TOOLING)(\.md|\s*§|\s+(SR|PR)-\d|\s+\")")
TEXT_SUFFIXES = (".md", ".py", ".toml", ".json", ".mjs", ".js", ".ini", ".txt", ".cfg")


def _tracked_text_files() -> list[Path]:
    p = subprocess.run(["git", "-C", str(REPO), "ls-files"], capture_output=True, text=True,
                       check=False)
    if p.returncode != 0:                   # not a checkout: what ships
        return [f for d in ("docs", "host", "sim", "hil", "plant", "firmware", "scenarios")
                for f in sorted((REPO / d).rglob("*")) if f.suffix in TEXT_SUFFIXES] + \
            [REPO / "README.md"]
    return [REPO / n for n in p.stdout.splitlines()
            if n.endswith(TEXT_SUFFIXES) or n in ("Makefile", ".gitignore")]


def test_docs_and_sources_cite_only_documents_in_the_repository() -> None:
    """A reader can open every document cited: every relative link of README and docs/
    resolves, every docs/*.md named exists, and no document, source, scenario or data file
    cites SPEC/DESIGN/STYLE/TOOLING (documents outside the repository); requirements are
    cited by their ids (SR-8), documents by their path (docs/drug-library.md)."""
    me = Path(__file__).resolve()
    bad = []
    for f in _tracked_text_files():
        if f.resolve() == me or not f.is_file():
            continue
        rel = f.relative_to(REPO).as_posix()
        text = f.read_text(encoding="utf-8", errors="replace")
        for m in OUTSIDE.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            bad.append(f"{rel}:{line}: cites {m.group(0)!r}")
        if f.suffix == ".md":
            for m in re.finditer(r"\]\(([^)#\s]+)(#[^)]*)?\)", text):
                target = m.group(1)
                if "://" not in target and not (f.parent / target).exists():
                    bad.append(f"{rel}: link to missing {target}")
        for m in re.finditer(r"\bdocs/[\w.-]+\.md\b", text):
            if not (REPO / m.group(0)).exists():
                bad.append(f"{rel}: cites missing {m.group(0)}")
    assert not bad, "\n".join(bad)


def test_units_write_no_trailing_zero_and_a_leading_zero() -> None:
    assert [units.dec(v) for v in (240000, 600, 116667, 0, 5, 100800)] == \
        ["240", "0.6", "116.667", "0", "0.005", "100.8"]
    assert units.check("zbs259") == "ZBS-259" == units.check("ZBS-259")


@pytest.mark.parametrize("patient", [
    {"weight_kg": "70", "height_cm": "175", "dose_ug_per_day": "28", "bag_hours": 24},
    {"weight_kg": "70", "height_cm": "175", "dose_ug_per_day": "9", "bag_hours": 168},
    {"weight_kg": "20", "height_cm": "110", "dose_ug_per_m2_per_day": "15", "bag_hours": 48},
])
def test_every_figure_the_pump_echoes_is_on_the_printed_label(patient: dict[str, Any]) -> None:
    from host.pharmacy import sheet
    from pump import program

    prep = preparation("blinatumomab", **patient)
    lab = prep["label"]
    entry = {"rate": units.dec(lab["rate_ul_per_h"]), "unit": "mL/h",
             "vtbi_ml": units.dec(lab["infusible_ul"])}
    prop = program.propose(lab, entry, 1)
    assert isinstance(prop, program.Proposal), prop
    label_text = sheet(prep).split("BAG LABEL")[1]
    for part in cli.echo_text(list(prop.echo)).split("  ")[1:]:
        figure = part.split(" ", 1)[1]                   # "10 mL/h", "116.667 ng/mL", ...
        assert figure in label_text, (figure, label_text)


def test_pumpsim_board_names_the_pumpctl_beside_it() -> None:
    """A new user runs `.venv/bin/pumpsim board` without activating the venv: the line it
    suggests must run as printed (`.venv/bin/pumpctl`, not a bare `pumpctl` not on PATH)."""
    venv_bin = Path(sys.executable).parent
    pumpsim = venv_bin / "pumpsim"
    if not (venv_bin / "pumpctl").exists():
        pytest.skip("the console scripts are not installed beside this Python")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    p = subprocess.run([str(pumpsim), "board", "--seconds", "0.5"], capture_output=True,
                       text=True, timeout=60, env=env, cwd=venv_bin.parent.parent)
    shown = re.search(r"try:\s+(\S+) --port", p.stdout)
    assert shown, p.stdout + p.stderr
    cmd = Path(venv_bin.parent.parent, shown.group(1))
    assert shown.group(1) != "pumpctl" and cmd.resolve() == (venv_bin / "pumpctl").resolve()


def test_log_plot_marks_programs_and_alarms(tmp_path: Path) -> None:
    """`pumpctl log --plot`: the volume counted under each program, a new program or a clear
    marked (the count starts again from 0), alarms marked with their code."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    recs: list[dict[str, Any]] = [
        {"kind": "EVENT", "event_name": "program", "program_id": 2, "rtc_s": 1000},
        {"kind": "CHECKPOINT", "delivered_nl": 1000000, "rtc_s": 1360},
        {"kind": "EVENT", "event_name": "alarm", "alarm": "DOOR_OPEN", "rtc_s": 1400,
         "delivered_nl": 1100000},
        {"kind": "EVENT", "event_name": "FREE_FLOW", "alarm": "DOOR_OPEN", "rtc_s": 1400,
         "delivered_nl": 1100000},
        {"kind": "EVENT", "event_name": "clear", "rtc_s": 5000}]
    texts: list[str] = []
    real_savefig = plt.Figure.savefig

    def spy(fig: Any, *a: Any, **kw: Any) -> Any:
        texts.extend(t.get_text() for ax in fig.axes for t in ax.texts)
        texts.append(fig.axes[0].get_xlabel())
        return real_savefig(fig, *a, **kw)

    png = tmp_path / "j.png"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plt.Figure, "savefig", spy)
        cli.plot_log(recs, str(png))
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert " program 2" in texts and " clear" in texts
    assert "DOOR_OPEN" in texts and "FREE_FLOW" in texts
    assert "hours since 2000-01-01 00:16:40 (pump clock)" in texts
