"""The report's pages without runs: formulas as MathML (aalp.report.maths)."""
import html
import re

import numpy as np
import pytest

from aalp.report import maths


def test_a_formula_becomes_mathml():
    out = maths.mathml(r"\lambda\,\frac{1}{B}", display=True)
    assert out.startswith("<math") and 'display="block"' in out and "λ" in html.unescape(out) and "<mfrac>" in out


def test_tex_the_converter_leaves_as_text_is_an_error():
    """latex2mathml passes `\\big\\Vert` through as text: that must stop the page, not reach the reader."""
    with pytest.raises(maths.TexError, match=r"\\Vert"):
        maths.mathml(r"a \,\big\Vert\, b")
    with pytest.raises(maths.TexError):
        maths.mathml(r"\frac{1}{")


def test_markdown_does_not_mangle_maths():
    """`_` is no emphasis, `\\,` stays a thin space, and a `+ \\lambda` line of a displayed formula is no
    list item."""
    out = maths.markdown_html("Term $a_i b_j$ and `x_1`:\n\n$$\\mathcal{L} = a\\,b\n+ \\lambda c$$\n")
    assert "<em>" not in out and "<li>" not in out and "$" not in out and "\\" not in out
    assert out.count("<math") == 2 and "<code>x_1</code>" in out and 'width="0.167em"' in out


def test_maths_in_html_converts_text_and_leaves_code():
    body = '<p>Contribution $c_j$ of &lt;h&gt;</p><pre>cost $5 $HOME</pre><code>$x$</code><p>$$a &amp; b$$</p>'
    out = maths.maths_in_html(body)
    assert out.count("<math") == 2 and "<pre>cost $5 $HOME</pre><code>$x$</code>" in out
    assert "<p>Contribution <math" in out and "of &lt;h&gt;</p>" in out


# ----------------------------------------------------------------------------- the paper's protocol
def _paper():
    from aalp.report.protocol import paper_params

    return paper_params()


def _rows(cfg):
    from aalp.report.protocol import deviations

    return {(r["setting"], r["scope"]): (r["here"], r["paper"]) for r in deviations(cfg, _paper())}


def test_the_paper_set_departs_from_nothing():
    assert _rows(_paper()) == {}


def test_departures_follow_the_parameters():
    """Each row comes from a difference of the params, so changing one setting adds exactly its row (and a
    method's attack override only where it changes that dataset's attack: CIFAR-10 already uses 7 steps)."""
    import copy

    cfg = copy.deepcopy(_paper())
    cfg["experiments"]["svhn"]["lr"] = 5e-3
    cfg["experiments"]["mnist"]["attack"]["eps"] = 0.1
    cfg["methods"]["aalp"]["attack"] = {"steps": 7}
    cfg["evaluation"]["n_samples"] = 1000
    assert _rows(cfg) == {
        ("learning rate", "svhn"): ("0.005", "0.0001"),
        ("training attack", "mnist: raw, adv, alp, trades, alp_gd, alp_aw"): ("PGD-40, eps 0.1, step 0.01",
                                                                               "PGD-40, eps 0.3, step 0.01"),
        ("training attack", "mnist: aalp"): ("PGD-7, eps 0.1, step 0.01", "PGD-40, eps 0.3, step 0.01"),
        ("training attack", "svhn: aalp"): ("PGD-7, eps 0.04706 (12/255), step 0.01176 (3/255)",
                                            "PGD-10, eps 0.04706 (12/255), step 0.01176 (3/255)"),
        ("test samples attacked", ""): ("1,000", "the whole test set"),
    }
    cfg = copy.deepcopy(_paper())
    cfg["evaluation"]["step_rule"] = "fixed"  # what a set that does not say takes (configs/mnist_cpu)
    assert _rows(cfg) == {("evaluation step", ""): ("fixed: the dataset attack's step for every PGD-k and CW-k",
                                                    "reach: 2.5 · eps / k where k of the dataset attack's steps "
                                                    "cannot cross the ball")}


def test_a_stand_in_dataset_is_compared_with_the_paper_dataset_of_its_model():
    from aalp import config as C

    rows = _rows(C.load(C.REPO_ROOT / "results" / "fashion_cpu" / "params.yaml"))
    assert rows[("dataset stand-in", "fashion_mnist")][0] == "fashion_mnist"
    assert rows[("dataset stand-in", "fashion_mnist")][1].startswith("mnist")
    assert rows[("epochs", "fashion_mnist")] == ("2", "84")
    assert rows[("learning rate", "fashion_mnist")] == ("0.001", "0.0001")
    assert rows[("training images", "fashion_mnist")] == ("10,000", "the whole training set")
    assert rows[("AutoAttack samples", "")] == ("100", "every attacked sample")


# ----------------------------------------------------------------------------- units
def test_ours_is_the_95_percent_t_half_width_with_n():
    from scipy import stats

    from aalp.report.units import ours_text

    v = [88.8, 87.2, 90.2]
    m, sd = sum(v) / 3, float(np.std(v, ddof=1))
    assert ours_text(m, sd, 3) == f"{m:.2f} ± {stats.t.ppf(0.975, 2) * sd / 3 ** 0.5:.2f} (n=3)" == "88.73 ± 3.73 (n=3)"
    assert ours_text(88.8, 0.0, 1) == "88.80 (n=1)" and ours_text(float("nan"), 0, 0) == ""


def test_a_column_on_fewer_samples_says_how_many():
    from aalp.report.units import metric_label

    counts = {"clean": 500, "fgsm": 500, "pgd10": 500, "autoattack": 100}
    assert metric_label("autoattack", counts) == "autoattack (100 of 500 samples)"
    assert metric_label("pgd10", counts) == "pgd10"
    assert metric_label("autoattack", {**counts, "autoattack": 500}) == "autoattack"


# ----------------------------------------------------------------------------- the front page's seed count
def test_the_front_page_counts_the_seeds_each_method_has_not_the_sets():
    """A set published in slices holds different seeds per method: the front page must say so, not repeat the
    set's `seeds` (which overstated an ALP row resting on one seed as 'measured over 3 seeds')."""
    from aalp import config as C
    from aalp.report.frontpage import seeds_text

    cfg = C.load(C.REPO_ROOT / "configs" / "mnist_cpu" / "params.yaml")
    every = list(C.runs(cfg, sweeps=False))
    assert seeds_text(C.only_runs(cfg, [r for r in every if r[2] == 0])) == "1 seed (0)"
    keep = [r for r in every if r[2] in (0, 1) and r[1] in ("raw", "adv") or r[2] == 0]
    text = seeds_text(C.only_runs(cfg, keep))
    assert text.startswith("1–2 seeds per method (RAW 2 (0, 1); ADV 2 (0, 1); ALP 1 (0);"), text
    assert "ALP + GD 1 (0)" in text and text.endswith("AALP 1 (0))")


# ----------------------------------------------------------------------------- the method page's choices
def _method_rows(page: str) -> dict[str, list[str]]:
    """The table of choices on a rendered method page: row id -> its cells' HTML."""
    import re

    table = page.split('id="choices-the-paper-leaves-open"')[1].split("</table>")[0]
    return {m[1]: re.findall(r"<td>(.*?)</td>", m[2], re.S)
            for m in re.finditer(r'<tr id="([^"]+)">(.*?)</tr>', table, re.S)}


def test_every_choice_has_its_own_row_and_the_sets_value_beside_the_default():
    """Each parameter of the table of choices is an id on the method page (a row, or an anchor in a row naming
    two), the front page's list gives each its row, and with a set the row shows that set's value right after
    the paper set's default (a changed value shows, an unchanged one too)."""
    import copy
    import re

    from aalp.report.methodpage import _value, choice_id, choices, method_page

    cfg = copy.deepcopy(_paper())
    cfg["profile"] = "probe"
    cfg["experiments"]["mnist"]["epochs"] = 7
    cfg["methods"]["alp"]["lambda"] = 0.25
    page = method_page(cfg)
    rows = _method_rows(page)
    listed = choices(cfg)
    assert len(listed) > 25 and len({r for _, _, r in listed}) == len(listed)
    ids = re.findall(r'id="(choice-[^"]+)"', page)
    assert sorted(ids) == sorted(r for _, _, r in listed) and len(set(ids)) == len(ids)
    assert choice_id("methods.<name>.lambda") == "choice-methods.name.lambda"
    epochs = rows["choice-experiments.dataset.epochs"]
    assert epochs[1] == "MNIST 84, SVHN 30, CIFAR-10 100" and epochs[2] == html.escape(_value(cfg, "experiments.<dataset>.epochs"))
    assert "7 (mnist)" in epochs[2]
    lam = rows["choice-methods.name.lambda"]
    assert "0.25 (alp)" in lam[2] and "0.5 (" in lam[2]
    assert "<th>this set (<code>probe</code>)</th>" in page
    # the paper set's own value is its default; without a set the page has no such column
    plain = method_page()
    assert "<th>this set" not in plain and len(_method_rows(plain)["choice-experiments.dataset.epochs"]) == 3


ADDRESS = "https://example.org/aalp"  # a stand-in address for the tests; CITATION.cff gives none yet


@pytest.fixture
def with_address(monkeypatch):
    """CITATION.cff as if it named `ADDRESS` as the repository's address (repository-code)."""
    from aalp.report import cite

    cff = dict(cite.citation(), **{"repository-code": ADDRESS})
    monkeypatch.setattr(cite, "citation", lambda: cff)
    return ADDRESS


def test_the_method_page_links_the_speed_page_and_the_repository_by_address(with_address):
    """docs/speed.md is not part of the report: where the repository has an address, the method page's links
    to it go there."""
    from aalp.report.methodpage import method_page

    page = method_page()
    assert 'href="speed.md' not in page and f'href="{with_address}/blob/main/docs/speed.md#speed-options"' in page
    assert f'<a href="{with_address}">the repository</a>' in page


def test_without_an_address_the_method_page_names_the_speed_page_without_linking_it():
    """No public address: the links to docs/speed.md become text that names the file, neither a link to an
    address that does not exist nor a relative one that the report's folder cannot resolve."""
    from aalp.report.cite import repository_url
    from aalp.report.methodpage import method_page

    assert repository_url() is None  # CITATION.cff has no repository-code (yet)
    page = method_page()
    assert "speed.md" not in "".join(re.findall(r'href="([^"]*)"', page))
    assert "Speed and engineering (<code>docs/speed.md</code> in the repository)" in page
    assert '<p class="small">This page is <code>docs/method.md</code> of the repository.</p>' in page


# ----------------------------------------------------------------------------- how to cite
def test_the_papers_bibtex_comes_from_citation_cff():
    from aalp.report import cite

    bib = cite.paper_bibtex()
    assert bib.startswith("@article{wu2020adaptive,\n") and bib.endswith("\n}")
    assert "{Wu, Shangxi and Sang, Jitao and Xu, Kaiyuan and Zheng, Guanhua and Xu, Changsheng}" in bib
    assert "{Adaptive Adversarial Logits Pairing}" in bib and "{2020}" in bib and "{2005.11904}" in bib
    assert bib.count("{") == bib.count("}")
    ref = cite.citation()["preferred-citation"]
    assert ref["title"] in bib and str(ref["year"]) in bib  # read from the file, not written here


def test_the_reproductions_citation_names_its_title_license_and_address(with_address):
    from aalp.report import cite

    c = cite.citation()
    line = cite.reproduction_citation()
    assert c["title"] in line and "MIT license" in line and line.endswith(with_address)
    bib = cite.reproduction_bibtex()
    assert bib.startswith("@software{") and f"{{{with_address}}}" in bib and bib.count("{") == bib.count("}")
    assert "{{the AALP reproduction authors}}" in bib  # an entity: one name, not "authors, the AALP reproduction"
    assert "note" not in bib
    block = cite.cite_block()
    assert block["paper"] == cite.paper_bibtex() and block["repository"] == with_address


def test_without_an_address_the_reproductions_citation_gives_none():
    """No public address yet: no url in the citation or its BibTeX (which says where the code is instead)."""
    from aalp.report import cite

    c = cite.citation()
    assert "repository-code" not in c and cite.repository_url() is None
    line = cite.reproduction_citation()
    assert c["title"] in line and line.endswith("MIT license.") and "http" not in line.replace(c["title"], "")
    bib = cite.reproduction_bibtex()
    assert "url" not in bib and "http" not in bib and bib.count("{") == bib.count("}")
    assert "note" in bib and "the repository's commit named in the report's provenance" in bib
    assert cite.cite_block()["repository"] is None


def _cite_section(block: dict) -> str:
    """The front page's "How to cite" block (index.html.j2) rendered on its own with `block`."""
    from aalp.report.pages import TEMPLATES, environment

    source = (TEMPLATES / "index.html.j2").read_text()
    start = source.index("{% if cite is defined and cite %}")
    end = source.index("{% endblock %}", start)
    return environment().from_string(source[start:end]).render(cite=block)


def test_the_front_pages_how_to_cite_links_the_repository_only_where_it_has_an_address(with_address):
    from aalp.report import cite

    linked = _cite_section(cite.cite_block())
    assert f'<a href="{with_address}">repository</a>' in linked and "no public address" not in linked
    plain = _cite_section(dict(cite.cite_block(), repository=None))
    assert "href=\"http" not in plain and "None" not in plain
    assert "The repository has no public address yet" in plain and '<a href="#provenance">Provenance</a>' in plain
    assert cite.cite_block()["paper"] in html.unescape(plain)
