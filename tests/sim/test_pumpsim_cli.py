"""`pumpsim` as its help and the README promise it: `--version` names the version, the git
commit and the firmware's hash; `run FILE --json --out DIR` writes the result, the trace, the
decoded journal and the plots (the fault up close too); a field error names the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from host.version import version_info
from sim import cli

REPO = Path(__file__).resolve().parents[2]
RUNAWAY = REPO / "scenarios" / "runaway-motor-10x-24h-bag.toml"


def test_pumpsim_version_names_version_commit_and_firmware_hash(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    out = capsys.readouterr().out.strip()
    info = version_info()
    assert out.startswith("pumpsim %s " % info["version"])
    assert info["firmware_sha256"][:16] in out
    if info["commit"]:
        assert info["commit"] in out


def test_pumpsim_run_json_out_writes_result_trace_journal_and_plots(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert cli.main(["run", str(RUNAWAY), "--json", "--out", str(out)]) == 0
    res = json.loads(capsys.readouterr().out)
    d = out / "runaway-motor-10x-24h-bag"
    for name in ("result.json", "trace.csv", "journal.bin", "journal.csv", "plot.png",
                 "fault.csv", "fault.png"):
        assert (d / name).exists(), name
    assert res["plot_file"] == str(d / "plot.png")
    assert res["fault_plot_file"] == str(d / "fault.png")
    assert (d / "plot.png").read_bytes()[:4] == b"\x89PNG"
    journal = (d / "journal.csv").read_text().splitlines()
    assert journal[0].startswith("slot,seq,kind,state") and len(journal) > 10
    assert any(",OVER_INFUSION," in ln for ln in journal)      # the latched alarm, decoded
    # what the report's fault figures rest on
    assert res["detection_alarm"] == "OVER_INFUSION"
    assert 0 < res["detection_latency_s"] <= 300
    assert res["fault_window_excess_ml"] == res["fault_excess_ml"] <= 0.1
    assert res["excess_at_fault_ml"] + res["fault_excess_ml"] >= res["excess_ml"] - 1e-6


def test_pumpsim_run_field_error_names_the_file(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(RUNAWAY.read_text().replace("factor = 10.0", "factor = -1.0"))
    assert cli.main(["run", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "pumpsim: %s: faults[0].factor: expected a number 0.01 ≤ x ≤ 1000, got -1.0" \
        % bad


def test_pumpsim_run_summary_shows_the_fault_figures_against_their_limits_in_words(
        capsys: pytest.CaptureFixture[str]) -> None:
    """The terminal summary answers what the report's card does: the fault's own excess (the
    cassette's drift told apart) and its detection time, each with its limit; expectations
    in words with ≤/≥, never a Python list."""
    assert cli.main(["run", str(RUNAWAY)]) == 0
    out = capsys.readouterr().out
    assert "detected by: OVER_INFUSION after 0.84 s  (limit ≤ 5.0 min: met)" in out
    assert "excess the fault caused: 0.021 mL  (limit ≤ 0.1 mL: met)" in out
    assert "(drift, not a fault)" in out
    assert "[pass] max_fault_excess_ml: excess the fault caused 0.021 mL ≤ 0.1 mL" in out
    assert "[pass] alarm: alarm OVER_INFUSION raised" in out
    assert "['" not in out and "expected 0.1" not in out
    refused = REPO / "scenarios" / "wrong-unit-ml-per-24h.toml"
    assert cli.main(["run", str(refused)]) == 0
    out = capsys.readouterr().out
    assert "program refused: UNIT_REJECTED" in out and "mL/h only" in out
