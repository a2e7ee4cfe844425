"""bench-report: one self-contained HTML page per sweep. Its table equals table.csv, its saliency
maps the saved maps; a failed job and flagged images are shown; no URL leaves the page; the
regression page marks a regressed cell; and (slow) headless Chromium opens it offline."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib import colormaps
from PIL import Image

from bench.api import compose
from bench.api import report as api_report
from bench.cli.callbacks import CollateOnMultirunEnd
from bench.cli.collate import main as collate_main
from bench.cli.regress import main as regress_main
from bench.cli.report import main as report_main
from bench.engine.run import run
from bench.methods.baselines import Random
from bench.methods.gradient import Gradient
from bench.results import stats
from bench.results.collate import collate
from bench.results.papers import write_paper_tables
from bench.results.report import gather, render_study, write_report

METRICS = "metric=[deletion,insertion,pointing_game,model_randomisation_cascading]"
COMMON = (
    "dataset.limit=8",
    "batch_size=4",
    METRICS,
    "metric.deletion.step=1792",
    "metric.insertion.step=1792",
    "metric.model_randomisation_cascading.similarities=[ssim]",
)
#: (method, save_maps): gradcam's maps only in the attribution cache
JOBS = (("random", True), ("gradient", True), ("gradcam", False))
#: The image whose random map is made constant (flagged ``constant_map``, left out of the means).
FLAGGED = 1


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A tiny sweep: three methods that completed (random's second image of each batch a constant
    map), and a fourth job that failed."""
    root = tmp_path_factory.mktemp("report")
    mp = pytest.MonkeyPatch()
    real = Random.attribute

    def constant_one(self, model, images, targets):
        maps = real(self, model, images, targets)
        maps[FLAGGED] = 0.5
        return maps

    def broken(self, model, images, targets):
        raise RuntimeError("the gradient blew up")

    try:
        mp.setattr(Random, "attribute", constant_one)
        for i, (method, save) in enumerate(JOBS):
            cfg = compose(f"method={method}", *COMMON, f"save_maps={str(save).lower()}",
                          f"paths.cache_root={root / 'cache'}", "cache=readwrite", resolve=False)  # fmt: skip
            assert run(cfg, root / "sweep" / f"{i}_{method}")["status"] == "completed"
        mp.setattr(Gradient, "attribute", broken)
        with pytest.raises(RuntimeError, match="blew up"):
            run(
                compose("method=gradient", "seed=1", *COMMON, resolve=False), root / "sweep" / "3_x"
            )
    finally:
        mp.undo()
    return root / "sweep"


@pytest.fixture(scope="module")
def page(sweep, tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("page") / "report.html"
    done = write_report([sweep], out)
    assert done.path == out and done.jobs == 3 and done.incomplete == 1
    return out, out.read_text()


class Parsed(HTMLParser):
    """Every element's attributes, tables as lists of rows of (attrs, text) cells."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict]] = []
        self.tables: dict[str, list[list[tuple[dict, str]]]] = {}
        self._table: str | None = None
        self._cell: list | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.elements.append((tag, a))
        if tag == "table" and "data-table" in a:
            self._table = (
                a["data-table"] + f"#{sum(k.startswith(a['data-table']) for k in self.tables)}"
            )
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = [a, ""]

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append(tuple(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1] += data


# --- the numbers ----------------------------------------------------------------------------------


def test_the_table_equals_table_csv(sweep, page, tmp_path):
    write_paper_tables(collate([sweep]), None, tmp_path)
    csv = pd.read_csv(tmp_path / "table.csv", keep_default_na=False, na_values=[""])
    (grid,) = [t for k, t in Parsed(page[1]).tables.items() if k.startswith("cells")]
    header = [text.split(" ")[0] for _, text in grid[0]]
    assert header[:3] == ["method", "n", "excluded"]
    metrics = header[3:]
    assert sorted(metrics) == sorted(csv["metric"].unique())
    seen = 0
    for row in grid[1:]:
        method = row[0][1]
        for (attrs, text), metric in zip(row[3:], metrics):
            r = csv[(csv["method"] == method) & (csv["metric"] == metric)].iloc[0]
            assert text == stats.interval_text(r["mean"], r["ci_low"], r["ci_high"])
            if np.isfinite(r["mean"]):  # sorted by the full mean, as written in table.csv
                assert float(attrs["data-sort"]) == r["mean"]
            assert ("best" in attrs["class"].split()) == bool(r["best"])
            seen += 1
        assert row[1][1] == str(csv.loc[csv["method"] == method, "n"].max())
    assert seen == len(csv) == 3 * len(metrics)


def test_tied_best_is_the_paired_tests_no_difference_with_a_best_method(sweep):
    study = gather([sweep], n_images=0)
    cells, pairs = study.cells, study.pairs
    for r in cells[cells["tied_best"]].itertuples():
        assert not r.best
        best = cells[(cells["metric"] == r.metric) & cells["best"]]["method"]
        p = pairs[(pairs["metric"] == r.metric)
                  & (pairs[["method_a", "method_b"]].isin([r.method]).any(axis=1))
                  & (pairs[["method_a", "method_b"]].isin(list(best)).any(axis=1))]  # fmt: skip
        assert (p["better"] == "").any()


def _png(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"))


def test_the_saliency_grid_shows_the_saved_maps(sweep, page):
    """Each map drawn is the job's saved map in viridis from its minimum to its 99th percentile
    (RdBu_r around 0 for signed maps): the same pixels, recomputed here from maps.npz."""
    imgs = [a for tag, a in Parsed(page[1]).elements if tag == "img" and "data-method" in a]
    methods = {a["data-method"] for a in imgs}
    assert methods == {"random", "gradient", "gradcam"}  # gradcam's read from the cache
    checked = 0
    for folder, method in ((sweep / "0_random", "random"), (sweep / "1_gradient", "gradient")):
        with np.load(folder / "maps.npz") as z:
            saved = {str(i): m.astype(float) for i, m in zip(z["ids"], z["maps"])}
        for a in (a for a in imgs if a["data-method"] == method):
            m = saved[a["data-image"]]
            if a["data-signed"] == "1":
                hi = np.percentile(np.abs(m), 99)
                want = colormaps["RdBu_r"](np.clip((m + hi) / (2 * hi), 0, 1))
            else:
                lo, hi = m.min(), np.percentile(m, 99)
                want = colormaps["viridis"](np.clip((m - lo) / (hi - lo), 0, 1))
            got = _png(a["src"]).astype(int)
            assert got.shape[:2] == m.shape
            assert np.abs(got - (want[..., :3] * 255 + 0.5).astype(int)).max() <= 1
            checked += 1
    assert checked >= 6
    assert 'class="cbar"' in page[1] and "viridis" in page[1]  # the colour bar
    assert "explained: <b>" in page[1] and "prediction: <b>" in page[1]


def test_a_failed_job_and_flagged_images_are_shown(sweep, page):
    text = page[1]
    assert 'class="banner"' in text and "1 job(s) did not complete" in text
    problems = text[text.index('id="problems"') :]
    assert "FAILED" in problems and "3_x" in problems and "the gradient blew up" in problems
    rows = collate([sweep]).rows
    flagged = rows[rows["flag"] == "constant_map"]
    assert len(flagged) and set(flagged["method"]) == {"random"}
    for image in flagged["image_id"].unique():
        assert f"<td>{image}</td>" in problems
    assert "constant_map" in problems and "Flagged images (" in problems


# --- self-contained ---------------------------------------------------------------------------------

_URL_ATTRS = ("src", "href", "xlink:href", "action", "poster", "data", "srcset")


def external_urls(text: str) -> list[str]:
    """Every URL in a src/href (and like) attribute or a CSS url() that is not in-page (#...) or
    a data: URI."""
    bad = []
    for _, attrs in Parsed(text).elements:
        for k in _URL_ATTRS:
            v = (attrs.get(k) or "").strip()
            if k in attrs and not (v.startswith("#") or v.startswith("data:")):
                bad.append(f"{k}={v[:80]}")
    for v in re.findall(r"url\(\s*['\"]?([^'\")]*)", text):
        if not (v.startswith("#") or v.startswith("data:")):
            bad.append(f"url({v[:80]})")
    return bad


def test_no_external_url_in_any_src_or_href(page, tmp_path):
    text = page[1]
    assert external_urls(text) == []
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    assert not re.search(r"<(link|script)[^>]+(href|src)=\"(?!data:)", text)
    for forged in ('<img src="https://x.org/a.png">', '<a href="http://x.org">x</a>',
                   '<div style="background:url(//x.org/a.png)"></div>',
                   '<svg><image xlink:href="file:///etc/passwd"/></svg>'):  # fmt: skip
        assert external_urls(text.replace("</main>", forged + "</main>")), forged


def test_sections_in_order_and_each_empty_one_says_why(sweep, tmp_path):
    text = render_study(gather([sweep / "2_gradcam"], n_images=2))
    ids = re.findall(r'<section id="([\w-]+)"', text)
    assert ids == ["run", "tables", "significance", "agreement", "curves", "saliency",
                   "per-class", "throughput", "problems", "protocols"]  # fmt: skip
    # one method: no paired test; its maps still come from the attribution cache
    sig = text[text.index('id="significance"') : text.index('id="agreement"')]
    assert 'class="missing"' in sig and "single method" in sig
    assert 'data-method="gradcam"' in text
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = render_study(gather([empty]))
    assert nothing.count('class="missing"') >= 8 and "No completed job was found" in nothing


def test_what_was_run_and_the_protocol_links(page):
    text = page[1]
    run_ = text[text.index('id="run"') : text.index('id="tables"')]
    for word in ("shapes_cnn", "gradcam", "deletion", "Commit", "Device", "torch", "shapes: 8"):
        assert word in run_, word
    for target in re.findall(r'href="#(protocol-[\w-]+)"', text):
        assert f'id="{target}"' in text, target
    assert 'href="#protocol-1-deletion-and-insertion"' in text


# --- entry points ---------------------------------------------------------------------------------


def test_cli_api_collate_and_the_sweeps_end_write_the_report(sweep, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert report_main([str(sweep), "--out", str(out), "--images", "2"]) == 0
    assert str(out) in capsys.readouterr().out and out.stat().st_size > 10_000
    assert report_main([str(tmp_path / "nope")]) == 2
    (tmp_path / "empty").mkdir()
    assert (
        report_main([str(tmp_path / "empty")]) == 1 and (tmp_path / "empty/report.html").is_file()
    )
    assert api_report([sweep / "0_random"], tmp_path / "api.html").is_file()
    assert collate_main([str(sweep), "--out", str(tmp_path / "paper"), "--allow-incomplete"]) == 0
    assert (tmp_path / "paper" / "report.html").is_file() and (
        tmp_path / "paper" / "table.csv"
    ).is_file()
    copy = tmp_path / "copy"
    shutil.copytree(sweep, copy)
    with pytest.raises(
        SystemExit
    ):  # a job did not complete: the sweep fails, its report is written
        CollateOnMultirunEnd.collate(copy)
    assert "report.html" in capsys.readouterr().out and (copy / "report.html").is_file()


def test_the_regression_page_marks_a_regressed_cell(sweep, tmp_path, capsys):
    baseline = tmp_path / "baseline.json"
    done = [str(sweep / f"{i}_{m}") for i, (m, _) in enumerate(JOBS)]
    assert regress_main(["--write-baseline", str(baseline), "--current", *done]) == 0
    doc = json.loads(baseline.read_text())
    (cell,) = [c for c in doc["cells"] if (c["method"], c["metric"]) == ("gradcam", "insertion")]
    cell["mean"] += 0.5  # the baseline was far better: the current gradcam insertion regressed
    baseline.write_text(json.dumps(doc))
    page = tmp_path / "regress.html"
    assert regress_main(["--baseline", str(baseline), "--current", *done, "--html", str(page)]) == 1
    capsys.readouterr()
    text = page.read_text()
    assert external_urls(text) == [] and "1 regression(s)" in text
    (table,) = [t for k, t in Parsed(text).tables.items() if k.startswith("regress")]
    by = {(r[2][1], r[3][1].split(" ")[0]): r for r in table[1:]}
    bad = by[("gradcam", "insertion")]
    assert bad[11][1] == "REGRESSED" and "status-regressed" in bad[11][0]["class"]
    assert float(bad[4][1]) == pytest.approx(cell["mean"], abs=1e-4)  # both values shown
    assert bad[6][1].startswith("-") and bad[7][1].startswith("±")  # the difference, the tolerance
    assert sum(r[11][1] == "REGRESSED" for r in table[1:]) == 1


# --- in a real browser ------------------------------------------------------------------------------


def _chrome():
    """Debian's chromium through its chromedriver, headless, logging console and network events;
    skipped (failed where CI is set) when either or selenium is missing. No browser download."""
    chromium = os.environ.get("BENCH_CHROMIUM") or shutil.which("chromium")
    driver = os.environ.get("BENCH_CHROMEDRIVER") or shutil.which("chromedriver")
    missing = [n for n, p in (("chromium", chromium), ("chromedriver", driver)) if not p]
    missing += [] if importlib.util.find_spec("selenium") else ["selenium (pip install selenium)"]
    if missing:
        why = (f"the browser check needs {', '.join(missing)}: apt-get install chromium "
               "chromium-driver (.ci/run does)")  # fmt: skip
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                "--window-size=1366,900", "--disable-background-networking",
                "--disable-component-update", "--no-first-run"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


def _column(d, table, i: int) -> list[str]:
    return d.execute_script(
        "var i=arguments[1];return Array.from(arguments[0].tBodies[0].rows).map(function(r){var c=r.cells[i];"
        "var s=c.getAttribute('data-sort');return s===null?c.textContent:s;});",
        table,
        i,
    )


@pytest.mark.slow
def test_the_report_opens_offline_in_headless_chromium(page, tmp_path):
    """From a file:// URL with the network off: no console error, every image loaded, a click on
    a header sorts the rows, no request but file: and data:, no sideways scrolling on a phone;
    screenshots at a laptop's and a phone's width kept (in BENCH_SCREENSHOTS, else the test's
    folder)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    shots = Path(os.environ.get("BENCH_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    d = _chrome()
    try:
        d.execute_cdp_cmd("Network.enable", {})
        d.execute_cdp_cmd("Network.emulateNetworkConditions", {
            "offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0})  # fmt: skip
        d.get(page[0].as_uri())
        assert d.execute_script("return document.readyState") == "complete"
        images = d.execute_script(
            "return Array.from(document.images).map(function(i){return [i.complete, i.naturalWidth];});"
        )
        assert len(images) >= 12 and all(done and width > 0 for done, width in images)
        table = d.find_element(By.CSS_SELECTOR, 'table[data-table="cells"]')
        headers = table.find_elements(By.CSS_SELECTOR, "thead th")
        rows_before = _column(d, table, 0)
        changed = False
        for i in range(3, len(headers)):
            for order in ("ascending", "descending"):
                th = headers[i]  # clicked at its left edge (the § link sits at the right)
                ActionChains(d).move_to_element_with_offset(
                    th, -th.size["width"] // 2 + 4, 0
                ).click().perform()
                assert th.get_attribute("aria-sort") == order
                values = [float(v) for v in _column(d, table, i) if v not in ("", "—")]
                assert values == sorted(values, reverse=order == "descending")
                changed |= _column(d, table, 0) != rows_before
        assert changed, "no click reordered the rows"
        d.execute_script("document.getElementById('tables').scrollIntoView()")  # sorted
        d.save_screenshot(str(shots / "report_laptop.png"))
        d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True})  # fmt: skip
        d.refresh()
        d.save_screenshot(str(shots / "report_phone.png"))
        # nothing wider than the phone but inside a scrolling box (wide tables, figures)
        assert d.execute_script("return document.documentElement.scrollWidth") <= 390
        errors = [e for e in d.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert errors == []
        sent = [json.loads(e["message"])["message"] for e in d.get_log("performance")]
        urls = [
            m["params"]["request"]["url"]
            for m in sent
            if m["method"] == "Network.requestWillBeSent"
        ]
        assert urls and all(u.startswith(("file:", "data:")) for u in urls), urls
    finally:
        d.quit()
    for name in ("report_laptop.png", "report_phone.png"):
        assert (shots / name).read_bytes().startswith(b"\x89PNG")


def test_names_from_the_jobs_are_escaped(sweep):
    """A label is data: a method or metric named like markup is shown, never run or loaded."""
    study = gather([sweep], n_images=2)
    evil = '<img src=x onerror="alert(1)">'
    for frame in (study.rows, study.cells, study.pairs, study.avg_ranks, study.throughput):
        if "method" in frame:
            frame["method"] = frame["method"].replace("random", evil)
    for side in ("method_a", "method_b", "better"):
        study.pairs[side] = study.pairs[side].replace("random", evil)
    text = render_study(study)
    assert evil not in text and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in text
    assert external_urls(text) == []
