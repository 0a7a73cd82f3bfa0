"""The `rp2040js` backing: the reference board's firmware on the official MicroPython for the
Pico, on an emulated RP2040 (hil/rp2board.mjs, npm rp2040js). Where its fixtures are, and
the command line that starts it.

The project does not vendor the UF2 or the boot ROM. They are found, in this order: the
path given (`--uf2`, `--bootrom` of the HIL plugin, `pumpsim board`), the environment
(`RP2_UF2`, `RP2_BOOTROM`), or the folder `RP2_FIXTURES` / `../shared/rp2/` beside the
checkout, under their published names. Absent, the backing is skipped with that reason.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "rp2"
UF2_NAME = "micropython-v1.27.0-rpi-pico.uf2"
BOOTROM_NAME = "rp2040-bootrom-b1.bin"
# The files ../shared/rp2/README.md describes (MicroPython v1.27.0 for the Pico; the B1 ROM).
KNOWN_SHA256 = {
    UF2_NAME: "20f2ef7edfee57caa3073c56bf24918abfa1dd72dcfff73b4d753ad6bb5754c0",
    BOOTROM_NAME: "90b31e108faedfa6bbcfcc33ba05dac61e645108cfbbdc385f8dafc71fde44ae",
}
BOOTROM_SIZE = 16384
FLASH_SIZE = 2 * 1024 * 1024


class FixtureMissing(Exception):
    """The UF2, the boot ROM, Node.js or rp2040js is not there (the message says which and
    where it was looked for)."""


@dataclass(frozen=True)
class Fixtures:
    uf2: Path
    bootrom: Path
    rp2040js: Path | None          # a package folder given by RP2040JS, else node_modules'

    def env(self) -> dict[str, str]:
        e = dict(os.environ)
        if self.rp2040js is not None:
            e["RP2040JS"] = str(self.rp2040js)
        return e


def fixture_dir() -> Path:
    return Path(os.environ.get("RP2_FIXTURES", str(SHARED)))


def _pick(given: str | None, env: str, name: str) -> Path:
    where = []
    if given:
        p = Path(given).expanduser()
        if p.is_file():
            return p
        raise FixtureMissing(f"{p} does not exist (given for {name})")
    if os.environ.get(env):
        p = Path(os.environ[env]).expanduser()
        if p.is_file():
            return p
        raise FixtureMissing(f"{p} does not exist (from ${env})")
    p = fixture_dir() / name
    where.append(str(p))
    if p.is_file():
        return p
    raise FixtureMissing(f"no {name}: looked in {', '.join(where)}; give its path with "
                         f"--{'uf2' if name.endswith('.uf2') else 'bootrom'} or ${env} "
                         "(../shared/rp2/README.md says what it is and where it comes from)")


def find(uf2: str | None = None, bootrom: str | None = None) -> Fixtures:
    """The fixtures and the emulator, or FixtureMissing saying what is absent."""
    u = _pick(uf2, "RP2_UF2", UF2_NAME)
    b = _pick(bootrom, "RP2_BOOTROM", BOOTROM_NAME)
    if b.stat().st_size != BOOTROM_SIZE:
        raise FixtureMissing(f"{b} is {b.stat().st_size} bytes: an RP2040 boot ROM is "
                             f"{BOOTROM_SIZE}")
    if shutil.which("node") is None:
        raise FixtureMissing("node is not on PATH: install Node.js, then `make setup`")
    given = os.environ.get("RP2040JS")
    if given:
        pkg: Path | None = Path(given)
        if not (Path(given) / "dist" / "esm" / "index.js").is_file():
            raise FixtureMissing(f"$RP2040JS={given} is not an rp2040js package folder")
    else:
        pkg = None
        if not (REPO / "node_modules" / "rp2040js" / "package.json").is_file():
            raise FixtureMissing("node_modules/rp2040js is missing: run `make setup` (npm ci "
                                 "installs the version package.json pins)")
    if not (REPO / "node_modules" / "@micropython" / "micropython-webassembly-pyscript"
            ).is_dir():
        raise FixtureMissing("the MicroPython WebAssembly port is missing (it runs the "
                             "plant): run `make setup`")
    return Fixtures(u, b, pkg)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def command(fx: Fixtures, accel: int, start_ticks: int = 0, flash_image: Path | None = None,
            save_flash: Path | None = None) -> list[str]:
    node = shutil.which("node") or "node"
    cmd = [node, str(REPO / "hil" / "rp2board.mjs"), "--uf2", str(fx.uf2),
           "--bootrom", str(fx.bootrom), "--accel", str(accel),
           "--start-ticks", str(start_ticks)]
    if flash_image is not None:
        cmd += ["--flash-image", str(flash_image)]
    if save_flash is not None:
        cmd += ["--save-flash", str(save_flash)]
    return cmd


@dataclass
class Image:
    """A flash image of the emulated Pico with the firmware flashed, and how it was made."""

    path: Path
    dry_run: str                   # `pumpctl flash --dry-run` on the fresh board: its output
    after_dry_run: int             # files on the board after that dry run
    flash: str                     # `pumpctl flash --no-reset`: its output
    seconds: float


def make_image(fx: Fixtures, path: Path) -> Image:
    """Flash the firmware onto an emulated Pico fresh from its UF2 the way a device engineer
    flashes a board (`pumpctl flash`: mpy-cross for the board's version, mpremote's raw REPL
    over the USB serial, hash verification), and keep its flash, not yet started (no
    journal, no keys): each test's board starts from it."""
    import contextlib
    import io
    import time

    from hil.bridge import BoardError, VirtualBoard
    from host import cli
    from host import flash as fl

    def pumpctl(*argv: str) -> str:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            rc = cli.main(["--port", vb.uart_path, "flash", *argv])
        if rc != 0:
            raise BoardError(f"pumpctl flash {' '.join(argv)} onto the emulated Pico failed "
                             f"({rc}):\n{out.getvalue()}\n{vb.stderr_text()}")
        return out.getvalue()

    t0 = time.monotonic()
    vb = VirtualBoard("rp2040js", accel=0, start_ticks=0, rp2_fixtures=fx, save_flash=path)
    vb.start()
    try:
        dry = pumpctl("--dry-run", "--wait", "20")
        after_dry = len(fl.Mpremote(vb.uart_path).board().files)
        done = pumpctl("--no-reset", "--wait", "20")
    finally:
        vb.close()
    if not path.is_file() or path.stat().st_size != FLASH_SIZE:
        raise BoardError(f"the emulated Pico wrote no flash image to {path}:\n{vb.stderr_text()}")
    return Image(path, dry, after_dry, done, time.monotonic() - t0)
