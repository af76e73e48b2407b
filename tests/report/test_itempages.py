"""The item pages (figures and tables of the paper): reader names, Δ = ours − paper columns, the ± convention
of the Claim tables, previous/next links, the files each page links, and a figure a set cannot draw."""
import re

import pandas as pd
from scipy import stats

from aalp.report import labels as L
from aalp.report.claims import CLAIM_COLUMNS
from aalp.report.pages import item_files, item_nav, page
from aalp.report.tablehtml import claims_html, delta, interval
from aalp.report.tablepages import table1_html, table2_html, table3_html, table4_gap, table4_html


def _cells(html, tag="td"):
    return [re.sub(r"<[^>]+>", "", c) for c in re.findall(rf"<{tag}[^>]*>(.*?)</{tag}>", html)]


def test_code_names_read_as_words():
    assert L.method_name("alp_gd") == "ALP + GD" and L.method_name("aalp") == "AALP"
    assert L.method_name("aalp_lambda0p25") == "AALP, λ 0.25" and L.method_name("mystery") == "mystery"
    assert L.attack_name("pgd100") == "PGD-100" and L.attack_name("cw10") == "CW-10"
    assert L.attack_name("autoattack") == "AutoAttack" and L.attack_name("train") == "train"
    assert L.table1_name("clean_gt_confidence") == "clean true-class confidence (%)"
    assert L.claim_name("step1200/cam_area_adv")[0].startswith("step 1,200: Grad-CAM area")
    assert L.claim_name("final_probe_clean_acc") == ("final probe clean accuracy (%)", 100.0)
    assert L.claim_name("adv_conf_inconsistent")[1] == 100.0 and L.claim_name("n50")[1] == 1.0
    assert L.claim_name("pgd10") == ("PGD-10 accuracy (%)", 1.0)


def test_a_claim_table_gives_the_t_half_width_labelled_with_n_and_percent():
    """One claim of 3 seeds (1, 2, 3): 2 ± t(0.975, 2)·1/√3 = 2.0 ± 2.5, not the standard deviation 1; a
    confidence stored as a fraction shows in percent."""
    claims = pd.DataFrame([
        {"dataset": "mnist", "method": "alp", "claim": "n50", "mean": 2.0, "std": 1.0, "n_seeds": 3,
         "seeds": "0;1;2", "values": "1.0;2.0;3.0"},
        {"dataset": "mnist", "method": "alp", "claim": "adv_conf_consistent", "mean": 0.6, "std": 0.1, "n_seeds": 3,
         "seeds": "0;1;2", "values": "0.5;0.6;0.7"},
    ], columns=CLAIM_COLUMNS)
    half = stats.t.ppf(0.975, 2) / 3 ** 0.5
    assert interval([1.0, 2.0, 3.0]) == (f"2.0 ± {half:.1f}", 3)
    html = claims_html(claims)
    assert "<caption>mean ± 95% t-interval half-width over seeds, n = 3 seeds</caption>" in html
    assert _cells(html, "th") == ["claim", "ALP (n\u00a0=\u00a03)", "n50: features holding 50 % of the contribution",
                                  "adversarial true-class confidence (%), Consistent"]
    assert _cells(html) == [f"2.0 ± {half:.1f}", f"60 ± {10 * half:.0f}"]
    assert html.count("<tr>") == 3  # one header row, one row per claim: no empty header row


def test_delta_is_ours_minus_paper_and_red_beyond_two_points():
    assert delta(90.0, 94.61) == {"text": "−4.61", "cls": "num far"}
    assert delta(94.0, 94.61) == {"text": "−0.61", "cls": "num"} and delta(94.0, float("nan")) == ""
    t1 = pd.DataFrame({"dataset": "mnist", "source": "mnist", "model": "lenet", "method": "alp",
                       "set": ["consistent", "inconsistent"], "metric": "clean_gt_confidence",
                       "ours_mean": [90.0, 61.5], "ours_std": [1.0, 1.0], "n_seeds": 5, "n_samples": 100.0,
                       "paper": [94.61, 60.94]})
    html = table1_html(t1)
    assert _cells(html, "th")[:4] == ["set and quantity", "ours (n\u00a0=\u00a05)", "paper", "Δ (ours − paper)"]
    assert '<td class="num far">−4.61</td>' in html and '<td class="num">+0.56</td>' in html
    loss = t1.assign(metric="classification_loss", ours_mean=[0.47, 1.79], paper=[0.3262, 4.1833])
    assert "far" not in table1_html(loss)  # a loss is no percentage: no 2-point threshold
    assert "Consistent: clean true-class confidence (%)" in html and "clean_gt_confidence" not in html


def test_table3_has_a_delta_per_paper_column_it_shows():
    t3 = pd.DataFrame({"dataset": "mnist", "source": "mnist", "model": "lenet", "pair": "alp",
                       "method": ["alp", "alp_gd"], "metric": "pgd10", "ours_mean": [92.46, 92.1],
                       "ours_std": [0.4, 0.4], "n_seeds": [5, 3], "paper_table3": float("nan"),
                       "paper_table2": [96.66, float("nan")]})
    html = table3_html(t3)
    assert _cells(html, "th")[:4] == ["method and accuracy", "ours", "paper Table 2", "Δ (ours − paper Table 2)"]
    assert "paper Table 3" not in html and '<td class="num far">−4.20</td>' in html
    assert "ALP + GD: PGD-10 accuracy (%)" in html and "(n=3)" in html  # n per cell where the rows differ


def test_table2_colours_delta_as_the_front_page_does():
    t2 = pd.DataFrame({"dataset": "mnist", "source": "mnist", "model": "lenet", "method": "alp",
                       "metric": ["clean", "pgd10"], "ours_mean": [98.0, 90.0], "ours_std": [0.1, 0.5],
                       "n_seeds": 5, "n_samples": 10000, "paper": [98.77, 96.66], "seeds": "", "values": ""})
    html = table2_html(t2)
    assert _cells(html, "th") == ["method", "clean", "PGD-10", "ALP (n\u00a0=\u00a05)"]
    assert '<span class="far">Δ −6.66</span>' in html and '<span class="">Δ −0.77</span>' in html


def test_table4_has_delta_and_a_sentence_on_its_gap():
    r = next(pd.DataFrame([{"dataset": "mnist", "source": "mnist", "model": "lenet", "alp_mean": 64.75, "alp_std": 1.8,
                            "alp_n_seeds": 5, "aalp_mean": 63.33, "aalp_std": 1.8, "aalp_n_seeds": 5, "change": -1.37,
                            "alp_of_clean_correct": 66.26, "aalp_of_clean_correct": 64.68, "paper_alp": 94.91,
                            "paper_aalp": 96.03, "paper_change": 1.12, "budget": "3 epochs of PGD-10",
                            "paper_budget": "84 epochs of PGD-40"}]).itertuples())
    html = table4_html(r)
    assert "Δ (ours − paper)" in html and '<td class="num far">−30.16</td>' in html
    assert '<td class="num far">−2.49</td>' in html  # the change's Δ: −1.37 − 1.12
    assert table4_gap(r) == ("On mnist, ours is ALP 30.2 points under the paper's 94.91 and AALP 32.7 points under "
                             "the paper's 96.03. This set trains ALP and AALP for 3 epochs of PGD-10, against the "
                             "paper's 84 epochs of PGD-40.")
    assert table4_gap(r._replace(paper_alp=float("nan"))) == ""


def test_item_pages_link_the_previous_and_next_item():
    assert item_nav("fig01")["prev"] is None and item_nav("fig01")["next"]["href"] == "fig02.html"
    assert item_nav("fig12")["next"] == {"href": "budget.html", "text": "Budget curve",
                                         "title": "Budget curve: AALP − ALP against the training budget"}
    assert item_nav("budget")["next"] == {"href": "table1.html", "text": "Table 1",
                                          "title": "Table 1: confidence and losses of the Consistent and Inconsistent sets (ALP)"}
    assert item_nav("table4")["next"] is None and item_nav("fig06")["prev"]["text"] == "Fig. 4"
    html = page("Fig. 6", "<p>body</p>", nav=item_nav("fig06"))
    assert html.count('<a href="fig04.html" rel="prev"') == 2 and html.count('<a href="fig07.html" rel="next"') == 2
    assert '<a href="index.html">' in html and "Files of this page" not in html


def test_item_pages_link_the_files_the_folder_ships(tmp_path):
    for f in ("claims/fig06.csv", "data/fig06.csv", "figures/fig06.png", "figures/fig06.svg", "tables/table2.csv"):
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("x")
    hrefs = lambda files: [f["href"] for f in files]  # noqa: E731
    assert hrefs(item_files("fig06", tmp_path, written=("notebooks/fig06.ipynb",))) == [
        "notebooks/fig06.ipynb", "figures/fig06.png", "figures/fig06.svg", "claims/fig06.csv", "data/fig06.csv"]
    assert hrefs(item_files("fig06", tmp_path, drawn=False)) == ["claims/fig06.csv", "data/fig06.csv"]
    assert hrefs(item_files("table2", tmp_path)) == ["tables/table2.csv"]  # no table2_checks.csv here
    html = page("Fig. 6", "", nav=item_nav("fig06"), files=item_files("fig06", tmp_path))
    assert '<a href="claims/fig06.csv">claims per seed: claims/fig06.csv</a>' in html


def test_a_figure_the_set_cannot_draw_says_why_with_no_image(tmp_path, monkeypatch):
    """Fig. 6 of a set without a λ sweep (the MNIST CPU set's parameters): one sentence on why and what would
    draw it, no image, no Claim section, no raw backticks, no link to the figure files."""
    from aalp import config as C
    from aalp.report.inputs import needs
    from aalp.report.render import render

    cfg = C.load(C.REPO_ROOT / "results" / "mnist_cpu" / "params.yaml")
    monkeypatch.chdir(tmp_path)
    for f in ("claims", "data"):
        (tmp_path / "reports" / f).mkdir(parents=True)
    pd.DataFrame(columns=CLAIM_COLUMNS).to_csv(tmp_path / "reports/claims/fig06.csv", index=False)
    pd.DataFrame(columns=["dataset"]).to_csv(tmp_path / "reports/data/fig06.csv", index=False)
    render("fig06", tmp_path / "reports", {"report_dir": "reports", "profile": "mnist_cpu", "needs": needs(cfg, "fig06"),
                                           "title": "Fig. 6: accuracy against the swept loss weight"})
    html = (tmp_path / "reports/fig06.html").read_text()
    assert ("<strong>Not drawn.</strong> This set has no λ sweep: Fig. 6 needs AALP trained on mnist at several "
            "values of λ") in html
    assert "<img" not in html and "`" not in html and "Claim" not in html and "figures/fig06" not in html
    assert "error bars" not in html  # no caption of a plot that is not there
    assert (tmp_path / "reports/figures/fig06.png").is_file()  # the declared output, neither shown nor linked
