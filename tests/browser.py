"""Open a report in a real headless browser (Debian's chromium through chromedriver, driven by selenium) and
check it as a reader would: every link reachable from the front page resolves (files and #anchors), every
image decodes (naturalWidth > 0), the console stays free of errors, nothing is fetched from the network, no
page shows TeX as text (a `$` or a backslash command outside code: formulas must arrive as MathML), and in a
1400-pixel window no table's right edge passes the column it sits in and no table header or cell breaks a word
or a number across two lines.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

import pytest

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
WINDOW = 1400  # the width a reader's window has in the checks (pixels)
RAW_TEX = re.compile(r"\$|\\[A-Za-z]+")
# the page's text outside code, pre, script, style and MathML: what a reader reads as prose
VISIBLE_TEXT = """
const skip = new Set(['CODE', 'PRE', 'SCRIPT', 'STYLE', 'MATH', 'TEXTAREA']);
const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
const out = [];
for (let n = walk.nextNode(); n; n = walk.nextNode()) {
  let e = n.parentElement, shown = true;
  for (; e; e = e.parentElement) if (skip.has(e.tagName.toUpperCase())) { shown = false; break; }
  if (shown) out.push(n.nodeValue);
}
return out.join(' ');
"""
# every table whose right edge passes the content box of the element it sits in
TABLES_PAST_COLUMN = """
return Array.from(document.querySelectorAll('table')).map(t => {
  const p = t.parentElement, box = p.getBoundingClientRect(), cs = getComputedStyle(p);
  const column = box.right - parseFloat(cs.paddingRight) - parseFloat(cs.borderRightWidth);
  const right = t.getBoundingClientRect().right;
  const head = (t.rows.length ? t.rows[0].innerText : '').replace(/\\s+/g, ' ').slice(0, 60);
  return right > column + 1 ? `table "${head}" ends at ${Math.round(right)} px, its column at ${Math.round(column)} px` : null;
}).filter(x => x);
"""

# every word (a run of characters between spaces and hyphens) of a table's header or cell that the layout
# breaks across lines between two letters or digits ("chang|e", "96.6|6", "cam_ar|ea"); a break after
# punctuation ("experiments.<dataset>.|attack") is where a browser may break a long identifier
WORDS_BROKEN = """
const out = [];
const top = (n, i) => { const r = document.createRange(); r.setStart(n, i); r.setEnd(n, i + 1);
  const b = Array.from(r.getClientRects()).filter(x => x.width > 0); return b.length ? Math.round(b[0].top) : null; };
for (const cell of document.querySelectorAll('table th, table td')) {
  const walk = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
  for (let n = walk.nextNode(); n; n = walk.nextNode()) {
    const re = /[^\\s-]+/g;
    for (let m = re.exec(n.nodeValue); m; m = re.exec(n.nodeValue)) {
      for (let i = m.index + 1; i < m.index + m[0].length; i++) {
        const a = n.nodeValue[i - 1], b = n.nodeValue[i], ta = top(n, i - 1), tb = top(n, i);
        if (ta !== null && tb !== null && ta !== tb && /[A-Za-z0-9]/.test(a) && /[A-Za-z0-9]/.test(b)) {
          out.push(`${cell.tagName.toLowerCase()} "${m[0]}"`);
          break;
        }
      }
    }
  }
}
return out;
"""


def driver_or_skip():
    """A headless Chrome driver, or pytest.skip naming what is missing."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install selenium)")
    browser = next((shutil.which(b) for b in CHROMIUM if shutil.which(b)), None)
    chromedriver = shutil.which("chromedriver")
    if not browser or not chromedriver:
        pytest.skip("no headless browser here: apt-get install chromium chromium-driver (.ci/run does)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--window-size={WINDOW},1000",
              "--allow-file-access-from-files"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=opts, service=Service(chromedriver))


def _local(url: str) -> Path:
    return Path(unquote(urlparse(url).path))


def raw_tex(text: str) -> list[str]:
    """Each `$` or backslash command in `text`, with a little context."""
    return [text[max(0, m.start() - 25):m.end() + 25].replace("\n", " ") for m in RAW_TEX.finditer(text)]


def check_site(index: Path, screenshot: Path) -> dict:
    """Visit index.html and every local page it links (transitively); return {'pages', 'problems'}.
    Saves a full-page screenshot of the index."""
    driver = driver_or_skip()
    driver.set_window_size(WINDOW, 1000)
    problems: list[str] = []
    anchors: dict[str, set[str]] = {}  # page url -> ids other pages link to
    ids_by_page: dict[str, set[str]] = {}
    pages, queue, seen = [], [index.resolve().as_uri()], set()
    try:
        while queue:
            url = queue.pop(0)
            if url in seen:
                continue
            seen.add(url)
            path = _local(url)
            if not path.is_file():
                problems.append(f"broken link: {path}")
                continue
            if path.suffix != ".html":
                continue  # CSVs, PNGs, notebooks: existence is the check
            driver.get(url)
            pages.append(path)
            bad = driver.execute_script(
                "return Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)")
            problems += [f"image does not decode on {path.name}: {b}" for b in bad]
            remote = driver.execute_script(
                "return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith('file:') "
                "&& !n.startsWith('data:'))")
            problems += [f"network fetch from {path.name}: {r}" for r in remote]
            tex = raw_tex(driver.execute_script(VISIBLE_TEXT))
            problems += [f"TeX shown as text on {path.name} ({len(tex)}x): {t!r}" for t in tex[:3]]
            problems += [f"{path.name} does not fit a {WINDOW}-pixel window: {t}"
                         for t in driver.execute_script(TABLES_PAST_COLUMN)]
            broken = driver.execute_script(WORDS_BROKEN)
            problems += [f"{path.name} breaks a word in a table ({len(broken)}x): {', '.join(broken[:5])}"] if broken else []
            for entry in driver.get_log("browser"):
                if entry["level"] == "SEVERE":
                    problems.append(f"console error on {path.name}: {entry['message']}")
            ids = set(driver.execute_script("return Array.from(document.querySelectorAll('[id]')).map(e => e.id)"))
            for href in driver.execute_script("return Array.from(document.querySelectorAll('a[href]')).map(a => a.href)"):
                base, frag = urldefrag(href)
                if not base.startswith("file:"):
                    continue  # a link out (arXiv, docs) is not a fetch; the page works offline without it
                if frag:
                    anchors.setdefault(base, set()).add(frag)
                queue.append(base)
            if url == index.resolve().as_uri():
                height = driver.execute_script("return document.documentElement.scrollHeight")
                driver.set_window_size(WINDOW, min(int(height) + 50, 16000))
                driver.save_screenshot(str(screenshot))
                driver.set_window_size(WINDOW, 1000)
            ids_by_page[url] = ids
        for url, wanted in anchors.items():
            have = ids_by_page.get(url)
            if have is not None:
                problems += [f"missing anchor #{a} on {_local(url).name}" for a in sorted(wanted - have)]
    finally:
        driver.quit()
    return {"pages": pages, "problems": problems}

