"""pytest plugin: fixtures `board` and `rig` for the HIL suite, whatever backs them.

    pytest tests/hil                                   # virtual and virtual-mpy (default)
    pytest tests/hil --board virtual-mpy               # one backing
    pytest tests/hil --board /dev/ttyACM0 --rig /dev/ttyUSB0 --board-keys keys.json

--board   comma-separated: `virtual` (the virtual board, hil/vboard.py, on CPython),
          `virtual-mpy` (the same board on real MicroPython, WebAssembly port under Node),
          `rp2040js` (the reference board's firmware, flashed with pumpctl, on the official
          MicroPython for the Pico on an emulated RP2040: hil/rp2board.mjs), or a serial URL
          (device path, pty, socket://host:port). Env HIL_BOARD works too.
--uf2, --bootrom  rp2040js: the MicroPython UF2 and the RP2040 boot ROM (default: $RP2_UF2,
          $RP2_BOOTROM, else ../shared/rp2/); absent, rp2040js tests skip saying so.
--rig     `virtual` (the virtual board's own rig; the default) or a rig controller's URL
          (docs/rig.md). Tests that need a rig skip without one.
--accel   board seconds per wall second: 100 for virtual boards unless given (rp2040js: 20,
          and its waits count the emulated chip's own time); 1 for a board on a URL unless
          given (a virtual board started with `pumpsim board` runs at 100).

A virtual board is started fresh for each test (factory state, fresh journal) and given
keys generated for the session. A real board needs --board-keys (its clinician and service
keys, `pumpctl keys`) and is brought to IDLE before each test.
Registered through the `pytest11` entry point `hil` (pyproject.toml).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hil import rp2
from hil.bridge import BACKINGS, BoardError, VirtualBoard
from hil.harness import BoardHandle, provision, to_idle
from hil.rig import Rig, RigError
from host.client import KeyRing, PumpClient

DEFAULT_BOARDS = "virtual,virtual-mpy"


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("hil", "hardware-in-the-loop (hil/, docs/rig.md)")
    g.addoption("--board", default=None,
                help="virtual, virtual-mpy or a serial URL; a comma-separated "
                     f"list runs the suite on each (default {DEFAULT_BOARDS}; env HIL_BOARD)")
    g.addoption("--rig", default="virtual",
                help="virtual (the virtual board's rig) or a rig controller's serial URL")
    g.addoption("--accel", type=int, default=None,
                help="board seconds per wall second: virtual boards run this fast (default "
                     "100); a board on a URL is taken to run at 1 unless given (e.g. a "
                     "virtual board started with `pumpsim board`)")
    g.addoption("--board-keys", default=None, help="key file of a real board (pumpctl keys)")
    g.addoption("--uf2", default=None,
                help="rp2040js: MicroPython for the Pico, a UF2 (default $RP2_UF2, else "
                     f"../shared/rp2/{rp2.UF2_NAME})")
    g.addoption("--bootrom", default=None,
                help="rp2040js: the RP2040 B1 boot ROM (default $RP2_BOOTROM, else "
                     f"../shared/rp2/{rp2.BOOTROM_NAME})")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "hil: a hardware-in-the-loop test (fixture board)")
    config.addinivalue_line("markers", "needs_rig: the test injects conditions with a rig")
    config.addinivalue_line("markers", "rp2040js: runs only with --board rp2040js (the "
                            "emulated RP2040; slower, so not in the default run)")


def boards(config: pytest.Config) -> list[str]:
    v = config.getoption("board") or os.environ.get("HIL_BOARD") or DEFAULT_BOARDS
    return [s.strip() for s in str(v).split(",") if s.strip()]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "rp2040js" in boards(config):
        return
    skip = pytest.mark.skip(reason="the emulated Pico: give --board rp2040js (.ci/run does)")
    for item in items:
        if "rp2040js" in item.keywords:
            item.add_marker(skip)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "board_spec" in metafunc.fixturenames:
        metafunc.parametrize("board_spec", boards(metafunc.config), scope="function")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()   # type: ignore[attr-defined]
    if rep.when == "call":
        item.stash[_FAILED] = rep.failed


_FAILED = pytest.StashKey[bool]()


@pytest.fixture(scope="session")
def hil_keys(request: pytest.FixtureRequest) -> KeyRing:
    path = request.config.getoption("board_keys")
    return KeyRing.load(path) if path else KeyRing.generate("hil-session")


@pytest.fixture(scope="session")
def rp2_fixtures(request: pytest.FixtureRequest) -> rp2.Fixtures:
    """The emulated Pico's UF2 and boot ROM, and the emulator (skips saying what is absent)."""
    try:
        return rp2.find(request.config.getoption("uf2"), request.config.getoption("bootrom"))
    except rp2.FixtureMissing as e:
        pytest.skip(f"rp2040js: {e}")


@pytest.fixture(scope="session")
def rp2_flashed(rp2_fixtures: rp2.Fixtures, tmp_path_factory: pytest.TempPathFactory
                ) -> rp2.Image:
    """The emulated Pico fresh from its UF2, flashed with `pumpctl flash` once a session:
    its flash image and what pumpctl said."""
    path = tmp_path_factory.mktemp("rp2") / "flash.bin"
    try:
        return rp2.make_image(rp2_fixtures, path)
    except BoardError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def rp2_image(rp2_flashed: rp2.Image) -> Path:
    """The emulated Pico's flash after `pumpctl flash` (each test's board starts from it:
    factory state, no journal, no keys)."""
    return rp2_flashed.path


@pytest.fixture
def board(board_spec: str, request: pytest.FixtureRequest, hil_keys: KeyRing
          ) -> Iterator[BoardHandle]:
    given = request.config.getoption("accel")
    if board_spec in BACKINGS:
        if board_spec == "rp2040js":
            accel = int(given or 20)
            vb = VirtualBoard(board_spec, accel=accel,
                              rp2_fixtures=request.getfixturevalue("rp2_fixtures"),
                              flash_image=request.getfixturevalue("rp2_image"))
        else:
            accel = int(given or 100)
            vb = VirtualBoard(board_spec, accel=accel)
        try:
            vb.start()
        except BoardError as e:
            pytest.fail(str(e), pytrace=False)
        client = PumpClient(vb.uart_path, timeout=2.0, retries=4 if board_spec == "rp2040js"
                            else 2)
        handle = BoardHandle(client, board_spec, float(accel), vb)
        try:
            provision(client, hil_keys)
            yield handle
        finally:
            if request.node.stash.get(_FAILED, False):
                print(handle.diagnostics())
            client.close()
            vb.close()
        return
    if request.config.getoption("board_keys") is None:
        pytest.skip("a real board needs --board-keys FILE (its clinician and service keys)")
    client = PumpClient(board_spec, keys=hil_keys, timeout=2.0, retries=3)
    try:
        to_idle(client)
        yield BoardHandle(client, board_spec, float(given or 1), None)
    finally:
        client.close()


@pytest.fixture
def rig(board: BoardHandle, request: pytest.FixtureRequest) -> Iterator[Rig]:
    opt = request.config.getoption("rig")
    if opt == "virtual":
        if board.vb is None:
            pytest.skip("--rig virtual exists only with a virtual board: give --rig URL")
        url = board.vb.rig_path
    else:
        url = opt
    try:
        r = Rig(url)
        r.ping()
        r.reset()
    except RigError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield r
    finally:
        try:
            r.reset()
        except RigError:
            pass
        r.close()


__all__ = ["board", "rig", "hil_keys", "PumpClient"]
