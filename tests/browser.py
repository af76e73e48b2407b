"""Open a report in a real headless browser (Debian's chromium through chromedriver, driven by selenium) and
check it as a reader would: every link reachable from the front page resolves (files and #anchors), every
image decodes (naturalWidth > 0), the console stays free of errors, and nothing is fetched from the network.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

import pytest

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


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
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000",
              "--allow-file-access-from-files"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=opts, service=Service(chromedriver))


def _local(url: str) -> Path:
    return Path(unquote(urlparse(url).path))


def check_site(index: Path, screenshot: Path) -> dict:
    """Visit index.html and every local page it links (transitively); return {'pages', 'problems'}.
    Saves a full-page screenshot of the index."""
    driver = driver_or_skip()
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
                driver.set_window_size(1280, min(int(height) + 50, 16000))
                driver.save_screenshot(str(screenshot))
                driver.set_window_size(1280, 1000)
            ids_by_page[url] = ids
        for url, wanted in anchors.items():
            have = ids_by_page.get(url)
            if have is not None:
                problems += [f"missing anchor #{a} on {_local(url).name}" for a in sorted(wanted - have)]
    finally:
        driver.quit()
    return {"pages": pages, "problems": problems}

