"""The repository stands on its own: no file points outside it, and the method page it points to
covers every link and every [choice]."""
import json
import re
import subprocess

from conftest import REPO

OUTSIDE = ("../" + "shared", "shared/" + "paper")  # split so this file does not match itself
TEXT = {".py", ".md", ".yaml", ".yml", ".json", ".smk", ".ipynb", ".txt", ".toml", ".cfg", ".csv", ""}


def tracked_files():
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True)
    if out.returncode == 0 and out.stdout.strip():
        return [REPO / f for f in out.stdout.splitlines()]
    skip = {".git", ".venv", ".snakemake", "data", "runs", "reports", ".dvc"}
    return [p for p in REPO.rglob("*") if p.is_file() and not skip & set(p.relative_to(REPO).parts)]


def test_no_file_refers_outside_the_repository():
    offenders = []
    for f in tracked_files():
        if f.suffix not in TEXT or not f.is_file():
            continue
        text = f.read_text(errors="replace")
        offenders += [f"{f.relative_to(REPO)}: {needle}" for needle in OUTSIDE if needle in text]
    assert not offenders, offenders


def _anchors(md: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    out = set()
    for h in re.findall(r"^#{1,6} (.+)$", md, re.M):
        out.add(re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-"))
    return out


DOCS = ("method", "speed")  # docs/method.md: the method; docs/speed.md: the engineering moved off it


def test_every_link_to_the_method_page_resolves():
    """Every link anywhere in the repository to a heading of docs/method.md or docs/speed.md, and every link of
    the two pages to their own headings and to each other's, names a heading that exists."""
    anchors = {d: _anchors((REPO / "docs" / f"{d}.md").read_text()) for d in DOCS}
    links = []
    for f in tracked_files():
        if f.suffix in TEXT and f.is_file() and not (f.parent.name == "docs" and f.stem in DOCS):
            text = f.read_text(errors="replace")
            for d in DOCS:
                links += [(f.name, d, a) for a in re.findall(rf"docs/{d}\.md#([\w-]+)", text)]
                # short form after a first full link in the same sentence: "#records, #consistency-sets"
                links += [(f.name, d, a) for line in text.splitlines() if f"docs/{d}.md#" in line
                          for a in re.findall(r"(?<![\w/.])#([a-z][\w-]+)", line)]
    assert len([x for x in links if x[1] == "method"]) > 20, "the schema, params.yaml and the code point to the method page"
    assert any(x[1] == "speed" for x in links), "the code and the README point to the speed page"
    for d in DOCS:  # the two pages' links to themselves and to each other
        text = (REPO / "docs" / f"{d}.md").read_text()
        links += [(f"{d}.md", d, a) for a in re.findall(r"\]\(#([\w-]+)\)", text)]
        links += [(f"{d}.md", o, a) for o in DOCS for a in re.findall(rf"\]\({o}\.md#([\w-]+)\)", text)]
    missing = sorted({f"{n} -> {d}.md#{a}" for n, d, a in links if a not in anchors[d]})
    assert not missing, missing


def test_the_method_page_holds_the_method_only():
    """Engineering (speed options, kernels, throughput, measurements of a machine) lives on docs/speed.md; the
    method page speaks to a reader, not to an issue, and defines [choice] before it first uses it."""
    page = (REPO / "docs" / "method.md").read_text()
    for word in ("GFLOP", "FLOP/s", "MFLOP", "roofline", "images/s", "the issue", "build machine", "AVX"):
        assert word not in page, word
    first = page.index("[choice]")
    assert "marks" in page[first:first + 40], page[first - 80:first + 80]
    speed = (REPO / "docs" / "speed.md").read_text()
    assert "## CPU kernels" in speed and "## Seed groups" in speed and "the issue" not in speed


def test_every_schema_parameter_is_documented():
    """Each parameter of the schema says what it is and links the page that defines it."""
    schema = json.loads((REPO / "workflow" / "schemas" / "params.schema.json").read_text())
    undocumented = []

    def walk(node, path):
        for name, sub in node.get("properties", {}).items():
            if path and path[0] in ("methods", "experiments", "$defs") or path == ("evaluation",) or path == ("training",):
                if "docs/method.md#" not in sub.get("description", ""):
                    undocumented.append(".".join(path + (name,)))
            walk(sub, path + (name,))
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            walk(extra, path + ("*",) if path else ("*",))

    walk(schema["properties"]["methods"], ("methods",))
    walk(schema["properties"]["experiments"], ("experiments",))
    walk(schema["$defs"]["attack"], ("$defs",))
    for sec in ("training", "evaluation"):
        walk(schema["properties"][sec], (sec,))
    undocumented = [u for u in undocumented if u != "training.device"]
    assert not undocumented, undocumented


def test_every_choice_of_params_yaml_is_on_the_method_page():
    """Each key marked [choice] in params.yaml appears, by name, on the method page."""
    page = (REPO / "docs" / "method.md").read_text()
    keys = set()
    for line in (REPO / "params.yaml").read_text().splitlines():
        if "[choice" in line:
            keys.update(re.findall(r"\b(lambda|pairing|gd_mask_source|gd_rescale|mixed_batch|attack_mode|epochs|"
                                   r"batch_size|cw_kappa|step_rule|augment)\b", line))
    assert {"epochs", "batch_size", "cw_kappa"} <= keys
    assert all(k in page for k in keys), sorted(k for k in keys if k not in page)


def test_the_repository_is_licensed_and_citable():
    """LICENSE is MIT and pyproject.toml declares it; CITATION.cff is Citation File Format 1.2.0 with the keys
    the format requires and points to the paper as its preferred citation. The repository has no public address
    yet: where CITATION.cff names one (repository-code), pyproject.toml's [project.urls] Repository is the same
    (the report links the one CITATION.cff gives); no file gives the address an earlier change made up."""
    import tomllib

    import yaml

    license_text = (REPO / "LICENSE").read_text()
    assert license_text.startswith("MIT License\n") and "Copyright (c) 2026 the AALP reproduction authors" in license_text
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    missing = {"cff-version", "message", "title", "authors"} - set(cff)
    assert not missing, missing
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software" and cff["license"] == "MIT"
    assert all("name" in a or "family-names" in a for a in cff["authors"])
    paper = cff["preferred-citation"]
    assert paper["title"] == "Adaptive Adversarial Logits Pairing" and paper["year"] == 2020
    assert [a["family-names"] for a in paper["authors"]] == ["Wu", "Sang", "Xu", "Zheng", "Xu"]
    assert [a["given-names"] for a in paper["authors"]] == ["Shangxi", "Jitao", "Kaiyuan", "Guanhua", "Changsheng"]
    assert "arXiv:2005.11904" in [i["value"] for i in paper["identifiers"]]
    if "repository-code" in cff:
        assert cff["repository-code"] == project["urls"]["Repository"]
    else:
        assert "Repository" not in project.get("urls", {})
    invented = "github.com/" + "aalp-reproduction"  # split so this file does not match itself
    # results/ holds published reports, rendered before the address was removed: `publish --rerender` renews them
    offenders = [str(f.relative_to(REPO)) for f in tracked_files()
                 if f.suffix in TEXT | {".cff", ".j2"} and f.is_file() and f.relative_to(REPO).parts[0] != "results"
                 and invented in f.read_text(errors="replace")]
    assert not offenders, offenders
