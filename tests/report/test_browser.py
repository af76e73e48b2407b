"""The browser check itself can fail: each defect a reader would hit is reported. (The CI profile's own
report is checked with it in test_e2e.py.)"""
import struct
import zlib

from browser import check_site, driver_or_skip


def _png(path, w=4, h=3):
    raw = b"".join(b"\x00" + b"\x80\x80\x80" * w for _ in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_a_clean_site_passes_and_every_defect_is_named(tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    _png(good / "ok.png")
    (good / "index.html").write_text(
        '<html><body style="max-width:1200px"><img src="ok.png"><a href="b.html#sec">b</a>'
        '<p>costs <code>$HOME/\\lambda</code>, <math><mi>λ</mi></math></p>'
        '<table><tr><td style="width:1100px">fits</td></tr></table></body></html>')
    (good / "b.html").write_text('<html><body><h2 id="sec">s</h2><a href="index.html">back</a></body></html>')
    r = check_site(good / "index.html", tmp_path / "good.png")
    assert r["problems"] == [] and len(r["pages"]) == 2
    assert (tmp_path / "good.png").stat().st_size > 0

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"not a png")
    (bad / "index.html").write_text(
        '<html><body><img src="broken.png"><a href="missing.html">x</a><a href="b.html#nowhere">y</a>'
        '<script>console.error("boom")</script><img src="http://127.0.0.1:9/remote.png">'
        '<p>weighted by $\\lambda$ and \\beta</p></body></html>')
    (bad / "b.html").write_text('<html><body style="max-width:1200px;margin:0 auto"><table><tr><th>a wide one</th>'
                                '<td style="min-width:1250px">x</td></tr></table></body></html>')
    problems = "\n".join(check_site(bad / "index.html", tmp_path / "bad.png")["problems"])
    assert "image does not decode on index.html" in problems and "broken.png" in problems
    assert "broken link" in problems and "missing.html" in problems
    assert "missing anchor #nowhere on b.html" in problems
    assert "console error on index.html" in problems and "boom" in problems
    assert "network fetch from index.html: http://127.0.0.1:9/remote.png" in problems
    assert "TeX shown as text on index.html (4x)" in problems and "weighted by $" in problems
    assert "b.html does not fit a 1400-pixel window: table \"a wide one" in problems


def test_the_window_is_1400_pixels_wide(tmp_path):
    """The layout check measures what a reader with a 1400-pixel window sees."""
    (tmp_path / "index.html").write_text(
        '<html><body><p id="w"></p><script>document.getElementById("w").id = "w" + window.innerWidth</script>'
        '<a href="index.html#w1400">self</a></body></html>')
    assert check_site(tmp_path / "index.html", tmp_path / "s.png")["problems"] == []


def test_the_method_page_shows_formulas_not_tex(tmp_path):
    """docs/method.md in a browser, as the report writes it for the paper set (with its maths font): every
    formula arrives as MathML, none as `$...$` or backslash commands, and its tables fit the window."""
    from aalp import config as C
    from aalp.report.methodpage import write_method_page

    (tmp_path / "index.html").write_text('<html><body><a href="method.html">method</a></body></html>')
    write_method_page(C.load(C.REPO_ROOT / "params.yaml"), tmp_path)
    r = check_site(tmp_path / "index.html", tmp_path / "s.png")
    assert not r["problems"], "\n".join(r["problems"])
    assert [p.name for p in r["pages"]] == ["index.html", "method.html"]
    assert (tmp_path / "method.html").read_text().count("<math") > 150


def test_a_word_broken_in_a_table_is_reported(tmp_path):
    """A header or number broken across lines ("chang|e", "96.6|612") is named; the report's tables (one header
    row of reader names, numbers kept whole) in the same narrow column break none."""
    from aalp.report.pages import page
    from aalp.report.tablehtml import html_table

    narrow = '<div style="width:70px">{}</div>'
    (tmp_path / "index.html").write_text(page("t", narrow.format(
        '<table><tr><th style="overflow-wrap:anywhere">change</th></tr>'
        '<tr><td style="overflow-wrap:anywhere">96.6612345</td></tr></table>'), back=False))
    problems = "\n".join(check_site(tmp_path / "index.html", tmp_path / "s.png")["problems"])
    assert 'index.html breaks a word in a table (2x): th "change", td "96.6612345"' in problems
    (tmp_path / "index.html").write_text(page("t", narrow.format(
        html_table(["Δ (ours − paper)"], [["AALP − ALP", {"text": "−30.16", "cls": "num"}]])), back=False))
    r = check_site(tmp_path / "index.html", tmp_path / "s.png")
    assert not [p for p in r["problems"] if "breaks a word" in p], r["problems"]


def _published_set(tmp_path):
    """results/fashion_cpu (a published set: run files and report) copied, its figures, tables and front page
    rebuilt with this checkout's report code."""
    import os
    import shutil

    from aalp import config as C
    from aalp.layout import REPORT_ITEMS
    from aalp.report.frontpage import report_index
    from aalp.report.items import report_item

    root = tmp_path / "fashion_cpu"
    shutil.copytree(C.REPO_ROOT / "results" / "fashion_cpu", root)
    old = os.getcwd()
    os.chdir(root)
    try:
        cfg = C.load("params.yaml")
        for item in REPORT_ITEMS:
            report_item(cfg, item, "reports")
        report_index(cfg, "reports")
    finally:
        os.chdir(old)
    return root / "reports"


def test_a_published_set_reads_well_in_a_1400_pixel_window(tmp_path):
    """The Fashion-MNIST CPU set, every page: no TeX as text (the method page, Fig. 1's `$c_j$`), no table
    past its column (Table 2 on the front page once cut off its AutoAttack column), and the pages say what
    the paper has no number for, how many samples AutoAttack saw and where the set departs from the paper;
    no table breaks a word or a number; every figure page's Claim table states its ± (the 95% t half-width)
    with n; every item page links the pages before and after it."""
    import re

    import pandas as pd
    from scipy import stats

    reports = _published_set(tmp_path)
    r = check_site(reports / "index.html", tmp_path / "index.png")
    assert not r["problems"], "\n".join(r["problems"])
    assert len(r["pages"]) == 18  # the front page, the method page, 16 items (the budget page among them)
    index = (reports / "index.html").read_text()
    assert 'href="method.html#choice-methods.name.lambda"' in index and 'id="cite"' in index  # rows checked above
    deviations = index.split('id="protocol"')[1].split('id="verdicts"')[0]
    for row in ("<td>learning rate</td><td>fashion_mnist</td><td>0.001</td><td>0.0001</td>",
                "<td>epochs</td><td>fashion_mnist</td><td>2</td><td>84</td>",
                "<td>training attack</td><td>fashion_mnist: every method</td><td>PGD-5, eps 0.1, step 0.025</td>"
                "<td>PGD-40, eps 0.3, step 0.01</td>", "<td>dataset stand-in</td>"):
        assert row in deviations, row
    assert "autoattack (100 of 500 samples)" in index and "(100 of 500 samples)" in (reports / "table2.html").read_text()
    table2 = index.split('id="table2"')[1].split('id="figures"')[0]
    for page in ("table1", "table2", "table3", "table4"):
        html = (reports / f"{page}.html").read_text()
        for text in (html, table2):
            assert "has no numbers for fashion_mnist" in text and "95% Student-t interval" in text, page
            assert not re.search(r">paper( T2| T3| ALP)?</th>", text), page
    # every ± is the 95% t half-width, never the standard deviation
    t2 = pd.read_csv(reports / "tables" / "table2.csv")
    raw = t2[(t2.method == "raw") & (t2.metric == "clean")].iloc[0]
    values = [float(v) for v in raw["values"].split(";")]
    half = stats.t.ppf(0.975, len(values) - 1) * pd.Series(values).std() / len(values) ** 0.5
    cell = f"{sum(values) / len(values):.2f} ± {half:.2f}"
    assert f"{raw.ours_std:.2f}" != f"{half:.2f}"
    for page in ("index", "table2", "table3"):
        assert cell in re.sub(r"\s+", " ", (reports / f"{page}.html").read_text()), (page, cell)
    from aalp.layout import FIGURES, REPORT_ITEMS

    for i, item in enumerate(REPORT_ITEMS):
        html = (reports / f"{item}.html").read_text()
        for j, rel in ((i - 1, "prev"), (i + 1, "next")):
            if 0 <= j < len(REPORT_ITEMS):
                assert f'<a href="{REPORT_ITEMS[j]}.html" rel="{rel}"' in html, (item, rel)
        if item in FIGURES and "Not drawn." not in html:
            assert re.search(r'<table class="report claims"><caption>mean ± 95% t-interval half-width over seeds, '
                             r'n = \d+ seeds</caption>', html), item
            assert "± std" not in html and "standard deviation" not in html, item


FONT_STATE = """
const done = arguments[arguments.length - 1];
document.fonts.ready.then(() => {
  const m = document.querySelector('math');
  const faces = Array.from(document.fonts).filter(f => f.family.replace(/"/g, '') === 'STIX Math');
  done({family: getComputedStyle(m).fontFamily, faces: faces.map(f => f.status),
        check: document.fonts.check('16px "STIX Math"', m.textContent),
        remote: performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith('file:'))});
});
"""


def test_formulas_use_the_bundled_maths_font_offline(tmp_path):
    """The method page as the report writes it (write_method_page: method.html and fonts/): its formulas' computed
    font is the bundled STIX Math, its face loaded from the report folder (a file: URL, nothing from the network),
    and document.fonts.check confirms it for a formula's text. Without the fonts folder the same face fails to
    load: the check sees the file, not a font the machine happens to have."""
    import shutil

    from aalp import config as C
    from aalp.layout import FONT_FILES
    from aalp.report.methodpage import write_method_page

    write_method_page(C.load(C.REPO_ROOT / "results" / "mnist_cpu" / "params.yaml"), tmp_path)
    assert all((tmp_path / f).is_file() for f in FONT_FILES)
    driver = driver_or_skip()
    try:
        driver.set_script_timeout(30)
        driver.get((tmp_path / "method.html").as_uri())
        got = driver.execute_async_script(FONT_STATE)
        assert got["family"].replace('"', "").startswith("STIX Math"), got
        assert got["faces"] == ["loaded"] and got["check"] and got["remote"] == [], got
        bare = tmp_path / "bare"  # the same page in a folder without fonts/ (another URL: no cached face)
        bare.mkdir()
        shutil.copy(tmp_path / "method.html", bare)
        driver.get((bare / "method.html").as_uri())
        assert driver.execute_async_script(FONT_STATE)["faces"] == ["error"]
    finally:
        driver.quit()
