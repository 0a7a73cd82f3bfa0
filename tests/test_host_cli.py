"""pumpctl: every command against a virtual board on a pty (as a user would from a shell)
and the program-file formats (`pumpctl flash`: tests/test_flash.py)."""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.bridge import VirtualBoard
from host import cli
from host import flash as fl

REPO = Path(__file__).resolve().parents[1]
FIRMWARE = REPO / "firmware"


@pytest.fixture(scope="module")
def vboard() -> Iterator[VirtualBoard]:
    with VirtualBoard("virtual", accel=100) as vb:
        yield vb


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_pumpctl_session_on_a_virtual_board(vboard: VirtualBoard, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    kf = str(tmp_path / "keys.json")
    base = ["--port", vboard.uart_path, "--keys", kf]
    rc, out, _ = run(capsys, "--keys", kf, "keys", "generate", "--device", "bench-1")
    assert rc == 0 and "mode 0600" in out
    assert run(capsys, "--keys", kf, "keys", "generate")[0] == 2       # no silent overwrite
    rc, out, _ = run(capsys, *base, "keys", "provision")
    assert rc == 0 and "['c', 's']" in out
    rc, out, _ = run(capsys, *base, "--json", "status")
    s = json.loads(out)
    assert rc == 0 and s["state"] == "IDLE" and s["keys"] == ["c", "s"]
    # a bag label from the pharmacy calculator, programmed with the confirm step
    from host.pharmacy import preparation

    prep = preparation("blinatumomab", 70, 175, dose_ug_per_day=28, bag_hours=24, cycle=2, day=1)
    label = tmp_path / "bag.json"
    label.write_text(json.dumps(prep))
    rc, _, err = run(capsys, *base, "program", str(label), "--rate", "10 mL/min", "--yes")
    assert rc == 1 and "UNIT_REJECTED" in err                            # SR-3
    rc, out, _ = run(capsys, *base, "program", str(label), "--yes")
    assert rc == 0 and "blinatumomab  rate 10 mL/h  VTBI 240 mL  dose 28 ug/day" in out
    assert "state PROGRAMMED" in out
    # the pump keeps the treatment plan: status shows cycle, day and the step due (issue 11)
    rc, out, _ = run(capsys, *base, "status")
    assert rc == 0 and "plan r/r cycle 2 day 1 step 28 ug/day" in out
    # a basic bench program is for service mode only (issue 11)
    rc, _, err = run(capsys, *base, "program", "--rate", "60 mL/h", "--vtbi", "10 mL", "--yes")
    assert rc == 1 and "SERVICE_MODE_REQUIRED" in err
    assert run(capsys, *base, "clear")[0] == 0
    rc, out, _ = run(capsys, *base, "service")
    assert rc == 0 and "state SERVICE" in out
    assert "SERVICE MODE" in run(capsys, *base, "status")[1]
    # a bench program; nothing starts until `start`
    rc, out, _ = run(capsys, *base, "program", "--rate", "60 mL/h", "--vtbi", "10 mL", "--yes")
    assert rc == 0 and "BASIC" in out
    assert json.loads(run(capsys, *base, "--json", "status")[1])["state"] == "PROGRAMMED"
    assert run(capsys, *base, "start")[1].strip() == "start: state RUNNING"
    assert run(capsys, *base, "pause")[1].strip() == "pause: state PAUSED"
    assert run(capsys, *base, "resume")[1].strip() == "resume: state RUNNING"
    rc, out, _ = run(capsys, *base, "--json", "watch", "--period", "1", "--count", "2")
    frames = [json.loads(x) for x in out.splitlines()]
    assert rc == 0 and len(frames) == 2 and all(f["kind"] in ("TLM", "EVT") for f in frames)
    rc, out, _ = run(capsys, *base, "ping", "--count", "20")
    assert rc == 0 and "20 pings: median" in out
    rc, out, _ = run(capsys, *base, "status")
    assert rc == 0 and out.startswith("state ")
    # the journal, as the service role
    rc, _, _ = run(capsys, *base, "log", "--format", "json", "--out", str(tmp_path / "j.json"))
    recs = json.loads((tmp_path / "j.json").read_text())
    assert rc == 0 and any(r["kind"] == "PROGRAM" and r["rate_ul_per_h"] == 60000 for r in recs)
    rc, out, _ = run(capsys, *base, "log", "--quiet")
    assert rc == 0 and out.splitlines()[0].startswith("slot,seq,kind,state")
    assert run(capsys, *base, "ack")[0] == 0
    assert run(capsys, *base, "stop")[1].strip() == "stop: state PROGRAMMED"
    # key rotation: new keys, authenticated with the current ones; the old ones stop working
    new = str(tmp_path / "new.json")
    assert run(capsys, "--keys", new, "keys", "generate")[0] == 0
    rc, out, _ = run(capsys, "--port", vboard.uart_path, "--keys", new, "keys", "provision",
                     "--current", kf)
    assert rc == 0 and "['c', 's']" in out
    assert run(capsys, *base, "clear")[0] == 1                      # old key: NOT_AUTHORISED
    rc, out, _ = run(capsys, "--port", vboard.uart_path, "--keys", new, "clear")
    assert rc == 0 and "state SERVICE" in out                        # back to service mode
    rc, out, _ = run(capsys, "--port", vboard.uart_path, "--keys", new, "exit-service")
    assert rc == 0 and "state IDLE" in out
    # no key file: privileged commands are a usage error, not a protocol error
    rc, _, err = run(capsys, "--port", vboard.uart_path, "--keys", str(tmp_path / "none"),
                     "start")
    assert rc == 2 and "no key file" in err


def test_pumpctl_without_port_or_board(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "--port", "", "status")
    assert rc == 2 and "no port" in err
    rc, _, err = run(capsys, "--port", "/dev/no-such-pump", "--timeout", "0.1", "status")
    assert rc == 3 and "cannot open" in err


def test_host_errors_are_one_family_with_pumpctl_exit_codes() -> None:
    from host import client, errors, pharmacy, statediagram

    for mod in (cli, client, errors, fl, pharmacy, statediagram):
        for name, c in inspect.getmembers(mod, inspect.isclass):
            if issubclass(c, BaseException):
                assert c.__module__ == "host.errors", f"{mod.__name__}.{name}"
                assert issubclass(c, errors.PumpError), name
    # the names users and tests import from the other modules are the family's
    assert (client.PumpError, client.PumpRefused, client.NotAuthorised, client.KeyMissing) == (
        errors.PumpError, errors.PumpRefused, errors.NotAuthorised, errors.KeyMissing)
    assert (cli.UsageError, fl.FlashError, pharmacy.RxError) == (
        errors.UsageError, errors.FlashError, errors.RxError)
    assert cli.exit_code(errors.PumpRefused("START", "LOCKOUT_ACTIVE")) == 1
    assert cli.exit_code(errors.NotAuthorised("CLEAR", "NOT_AUTHORISED")) == 1
    assert cli.exit_code(errors.UsageError("no port")) == 2
    assert cli.exit_code(errors.KeyMissing("no clinician key")) == 2
    assert cli.exit_code(errors.KeyFileError("not a key ring")) == 2     # a bad input file
    assert cli.exit_code(errors.RxError("DOSE_ABOVE_LIMIT")) == 1
    for e in (errors.PumpTimeout, errors.PumpConnectionError, errors.PumpProtocolError,
              errors.FrameTooLarge, errors.FlashError, errors.PumpError):
        assert cli.exit_code(e("x")) == 3, e


def test_program_file_formats(tmp_path: Path) -> None:
    lab = {"drug": "blinatumomab", "weight_g": 70000, "dose_ng_per_day": 28000,
           "bag_hours": 24, "rate_ul_per_h": 10000, "conc_pg_per_ml": 116667,
           "bag_volume_ul": 278096, "infusible_ul": 240000, "check": "ABC123"}
    assert cli.program_request({"label": lab}, None, None) == (
        "label", {"label": lab, "entry": {"rate": "10", "vtbi_ml": "240", "unit": "mL/h"}})
    assert cli.program_request(lab, "5 mL/h", "120 mL")[1]["entry"] == \
        {"rate": "5", "unit": "mL/h", "vtbi_ml": "120"}
    assert cli.program_request({"basic": {"rate": "60 mL/h", "vtbi": "1 mL"}}, None, None) == \
        ("basic", {"rate": "60 mL/h", "vtbi": "1 mL"})
    toml = tmp_path / "p.toml"
    toml.write_text('[label]\ndrug = "blinatumomab"\nweight_g = 70000\ndose_ng_per_day = 28000\n'
                    'bag_hours = 168\nconc_pg_per_ml = 1\nbag_volume_ul = 1\n'
                    'rate_ul_per_h = 600\ninfusible_ul = 100800\n'
                    'check = "X"\n[entry]\nrate_ml_per_h = 0.6\nvtbi_ml = 100.8\n')
    kind, req = cli.program_request(cli.load_doc(str(toml)), None, None)
    assert req["entry"] == {"rate": "0.6", "vtbi_ml": "100.8", "unit": "mL/h"}
    for bad in ({"basic": {"rate": 10}}, {"nothing": 1}, {"label": {"check": "x"}}):
        with pytest.raises(cli.UsageError):
            cli.program_request(bad, None, None)
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(cli.UsageError, match="not valid JSON"):
        cli.load_doc(str(tmp_path / "bad.json"))
