"""The suite report as a person sees it: report/index.html rendered by a real browser
(headless Chromium, Debian's `chromium`; .ci/run installs it). At 1280 and 1400 px wide
nothing overflows sideways, every image loads and is shown large enough to read, every link
resolves (files beside the report, anchors in the page), and a click on a plot opens it at
full size. Skipped, saying why, where Chromium is absent."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from sim.suite import run_suite

REPO = Path(__file__).resolve().parents[2]
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
BROWSER = next((b for b in map(shutil.which, BROWSERS) if b), None)
pytestmark = pytest.mark.skipif(
    BROWSER is None, reason="headless Chromium is not installed (Debian: apt-get install -y "
    "chromium; .ci/run installs it): the report is not checked in a browser here")

# a fault caught, a refused program, a trumpet run, and a failing nominal run: every kind of
# card the report draws
SCENARIOS = ("runaway-motor-10x-24h-bag.toml", "wrong-unit-ml-per-24h.toml",
             "trumpet-10-ml-h.toml")
FAILING = """name = "nominal-expecting-too-much"
description = "A one-hour run that expects more than a bag: a failed expectation, shown."
[patient]
weight_kg = 70.0
[prescription]
drug = "blinatumomab"
dose_ug_per_day = 28.0
bag_hours = 24
[run]
hours = 1.0
[expect]
delivered_ml_min = 1000.0
"""

# collects what a reader would check, after the page and its images have loaded
CHECK = """<script>
window.addEventListener('load', () => {
  const w = window.innerWidth, r = {inner: w, scroll: document.documentElement.scrollWidth};
  r.wide = [...document.querySelectorAll('body *')]
    .filter(e => e.getBoundingClientRect().right > w + 1)
    .map(e => e.tagName + '.' + e.className).slice(0, 8);
  r.images = [...document.images].map(i => ({src: i.getAttribute('src'),
    loaded: i.complete && i.naturalWidth > 0, natural: i.naturalWidth,
    shown: Math.round(i.getBoundingClientRect().width),
    link: i.closest('a') ? i.closest('a').getAttribute('href') : null}));
  r.links = [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'));
  r.ids = [...document.querySelectorAll('[id]')].map(e => e.id);
  const pre = document.createElement('pre');
  pre.id = 'check-result';
  pre.textContent = JSON.stringify(r);
  document.body.appendChild(pre);
});
</script>"""


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sc = tmp_path_factory.mktemp("scenarios")
    for name in SCENARIOS:
        shutil.copy(REPO / "scenarios" / name, sc / name)
    (sc / "nominal-expecting-too-much.toml").write_text(FAILING)
    out = tmp_path_factory.mktemp("report")
    rc = run_suite(str(sc), str(out), jobs=1, stdout=io.StringIO(), stderr=io.StringIO(),
                   command="pumpsim suite %s --out %s" % (sc, out))
    assert rc == 1            # the failing scenario
    return out


def render(report: Path, width: int) -> dict:
    """Load index.html in headless Chromium at `width` px and return what CHECK found."""
    page = report / ("check-%d.html" % width)
    page.write_text((report / "index.html").read_text(encoding="utf-8")
                    .replace("</body>", CHECK + "</body>"), encoding="utf-8")
    assert BROWSER is not None
    p = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu",
                        "--hide-scrollbars", "--window-size=%d,900" % width,
                        "--virtual-time-budget=15000", "--dump-dom", page.as_uri()],
                       capture_output=True, text=True, timeout=120, check=False)
    m = re.search(r'<pre id="check-result">(.*?)</pre>', p.stdout, re.S)
    assert m, "Chromium rendered nothing (exit %d): %s" % (p.returncode, p.stderr[-2000:])
    page.unlink()
    return json.loads(m.group(1).replace("&amp;", "&").replace("&lt;", "<")
                      .replace("&gt;", ">").replace("&quot;", '"'))


@pytest.mark.parametrize("width", [1280, 1400])
def test_report_in_a_browser_no_horizontal_overflow_images_load_links_resolve(
        report_dir: Path, width: int) -> None:
    r = render(report_dir, width)
    assert r["inner"] == width
    assert r["scroll"] <= r["inner"], "wider than the window: %s" % r["wide"]
    assert not r["wide"], r["wide"]
    assert r["images"], "no images in the report"
    for im in r["images"]:
        assert im["loaded"], "image did not load: %s" % im["src"]
        assert im["shown"] >= 280, "image too small to read: %s" % im
        assert im["link"] == im["src"] and im["natural"] >= max(700, im["shown"]), \
            "a click must open the plot at full size: %s" % im
    fault = [im for im in r["images"] if im["src"].endswith("fault.png")]
    assert fault and fault[0]["shown"] >= 0.4 * width, fault   # the fault up close, large
    # the whole run beside it is a three-panel figure: as wide as the column, not a thumbnail
    whole = [im for im in r["images"] if im["src"] == "runaway-motor-10x-24h-bag/plot.png"]
    assert whole and whole[0]["shown"] >= 0.4 * width, whole
    for href in r["links"]:
        if href.startswith("#"):
            assert href[1:] in r["ids"], "anchor %s goes nowhere" % href
            continue
        url = urlparse(href)
        target = Path(unquote(url.path)) if url.scheme == "file" else \
            report_dir / unquote(url.path)
        assert url.scheme in ("", "file"), href
        assert target.exists(), "link %s resolves to nothing" % href


def test_report_plots_are_the_scenarios_own(report_dir: Path) -> None:
    """A refused program has no plot (nothing was delivered); a caught fault has its fault
    plot and its whole-run plot; the journal is linked decoded, not as the raw .bin."""
    r = render(report_dir, 1280)
    srcs = [im["src"] for im in r["images"]]
    assert not any(s.startswith("wrong-unit-ml-per-24h/") for s in srcs)
    assert "runaway-motor-10x-24h-bag/fault.png" in srcs
    assert "runaway-motor-10x-24h-bag/plot.png" in srcs
    assert "trumpet-10-ml-h/trumpet.png" in srcs
    assert "runaway-motor-10x-24h-bag/journal.csv" in r["links"]
    assert not any(h.endswith(".bin") for h in r["links"])
