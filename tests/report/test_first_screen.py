"""The front page's first screen, in a real browser at 1400 x 1000 pixels, on the published MNIST set rebuilt with
this checkout's report code: the finding box is whole on the first screen, its headline follows the verdict
rows, its numbers are the verdict table's, and it shows the figure and clean accuracy beside the robust one."""
from __future__ import annotations

import os
import re
import shutil

import pandas as pd
import pytest

from browser import WINDOW, driver_or_skip


@pytest.fixture(scope="module")
def mnist_reports(tmp_path_factory):
    """results/mnist_cpu copied (no weights there), its Table 2 item and front page rebuilt with this code."""
    from aalp import config as C
    from aalp.report.frontpage import report_index
    from aalp.report.items import report_item

    src = C.REPO_ROOT / "results" / "mnist_cpu"
    if not (src / "manifest.json").is_file():
        pytest.skip("results/mnist_cpu is not in this checkout")
    root = tmp_path_factory.mktemp("first") / "mnist_cpu"
    shutil.copytree(src, root)
    old = os.getcwd()
    os.chdir(root)
    try:
        cfg = C.load("params.yaml")
        report_item(cfg, "table2", "reports", render_notebook=False)
        report_index(cfg, "reports")
    finally:
        os.chdir(old)
    return root / "reports"


def _text(x: float) -> str:
    return f"{x:+.2f}".replace("-", "−")


def test_the_finding_is_whole_on_the_first_screen_and_says_what_the_verdicts_say(mnist_reports):
    from selenium.webdriver.common.by import By

    v = pd.read_csv(mnist_reports / "tables" / "verdicts.csv")
    parts = v[v.claim_id.isin(["aalp_beats_alp", "aalp_beats_alp_aa"]) & v.counted.astype(bool)]
    assert len(parts) == 10  # FGSM, PGD-10/20/40/100, CW-10/20/40/100, AutoAttack
    driver = driver_or_skip()
    try:
        driver.set_window_size(WINDOW, 1000)
        driver.get((mnist_reports / "index.html").resolve().as_uri())
        screen = driver.execute_script("return window.innerHeight")
        box = driver.find_element(By.CSS_SELECTOR, ".finding")
        top, bottom = box.rect["y"], box.rect["y"] + box.rect["height"]
        assert 0 <= top and bottom <= screen, f"the finding box spans {top:.0f}-{bottom:.0f} px of a {screen} px screen"
        svg = box.find_element(By.CSS_SELECTOR, "svg")
        assert svg.rect["width"] > 400 and svg.rect["y"] + svg.rect["height"] <= screen
        text = re.sub(r"\s+", " ", box.text)
    finally:
        driver.quit()
    # the headline follows the verdict rows: every part's interval below 0 in this set
    if (parts.part_verdict == "does not hold").all():
        assert "AALP does worse than ALP" in text
    else:
        assert "AALP does worse than ALP" not in text
    for metric, name in (("pgd100", "PGD-100"), ("cw100", "CW-100"), ("autoattack", "AutoAttack")):
        r = parts[parts.part == f"{metric} AALP − ALP"].iloc[0]
        assert f"{name} {_text(r['mean'])} ± {r['half']:.2f}" in text, (name, text)
    assert "at 3 epochs" in text  # scoped to the set's budget
    assert "Clean accuracy" in text and "What this set cannot decide" in text
    assert "on the same first 500 test images" in text  # AutoAttack against PGD on the same images
