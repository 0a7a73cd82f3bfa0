"""`pumpctl flash`: copy firmware/ to a board with mpremote and verify every file's SHA-256.

The board's filesystem root is firmware/ (DESIGN §1): `firmware/pump/controller.py` goes to
`:/pump/controller.py`. Only source and data files are copied (.py .json .txt .toml .csv; no
__pycache__, no dotfiles). Files on the board that firmware/ lacks (the journal, the keys)
are listed, never deleted.

A "board" is either a serial port reached with mpremote, or a directory standing in for the
board's filesystem (`--target-dir`, for tests and for staging an image).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from host.errors import FlashError

FLASH_SUFFIXES = (".py", ".json", ".txt", ".toml", ".csv")

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


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(65536), b""):
            h.update(block)
    return h.hexdigest()


def local_manifest(src: Path) -> dict[str, str]:
    """{board path: sha256} of what firmware/ would put on the board."""
    out = {}
    for p in sorted(src.rglob("*")):
        rel = p.relative_to(src)
        if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
            continue
        if p.is_file() and p.suffix in FLASH_SUFFIXES:
            out["/" + rel.as_posix()] = sha256_file(p)
    return out


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


@dataclass
class Plan:
    new: list[str]
    changed: list[str]
    same: list[str]
    extra: list[str]          # on the board only: left alone
    mkdirs: list[str]

    @property
    def copies(self) -> list[str]:
        return sorted(self.new + self.changed)


def plan(local: dict[str, str], board: Board) -> Plan:
    new = [p for p in local if p not in board.files]
    changed = [p for p in local if p in board.files and board.files[p] != local[p]]
    same = [p for p in local if board.files.get(p) == local[p]]
    extra = sorted(p for p in board.files if p not in local)
    need: set[str] = set()
    for p in new:
        parts = p.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/" + "/".join(parts[:i])
            if d not in board.dirs:
                need.add(d)
    return Plan(sorted(new), sorted(changed), sorted(same), extra,
                sorted(need, key=lambda d: (d.count("/"), d)))


class Mpremote:
    """mpremote command lines for one port (`mpremote` may be any argv prefix)."""

    def __init__(self, port: str, mpremote: Sequence[str] = ("mpremote",)) -> None:
        self.port = port
        self.base = [*mpremote, "connect", port]

    def list_command(self) -> list[str]:
        return [*self.base, "exec", REMOTE_LIST]

    def copy_command(self, p: Plan, src: Path) -> list[str]:
        """One mpremote invocation: mkdir each missing directory, then cp each file."""
        cmd = list(self.base)
        steps: list[list[str]] = [["fs", "mkdir", ":" + d] for d in p.mkdirs]
        steps += [["fs", "cp", str(src / rel.lstrip("/")), ":" + rel] for rel in p.copies]
        for i, s in enumerate(steps):
            if i:
                cmd.append("+")
            cmd += s
        return cmd

    def run(self, cmd: list[str], timeout: float = 300.0) -> str:
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except FileNotFoundError as e:
            raise FlashError(f"{cmd[0]} not found: pip install mpremote") from e
        except subprocess.TimeoutExpired as e:
            raise FlashError(f"{' '.join(cmd[:4])} ...: timed out after {timeout:.0f} s") from e
        if r.returncode != 0:
            raise FlashError(f"{' '.join(cmd[:6])} ... exited {r.returncode}:\n"
                             f"{r.stdout}{r.stderr}")
        return r.stdout

    def board(self) -> Board:
        return parse_listing(self.run(self.list_command()))


def copy_to_dir(p: Plan, src: Path, root: Path) -> None:
    for d in p.mkdirs:
        (root / d.lstrip("/")).mkdir(parents=True, exist_ok=True)
    for rel in p.copies:
        dst = root / rel.lstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / rel.lstrip("/"), dst)


def verify(local: dict[str, str], board: Board) -> list[str]:
    """Board paths whose hash does not match firmware/ (missing counts as a mismatch)."""
    return sorted(p for p, h in local.items() if board.files.get(p) != h)
