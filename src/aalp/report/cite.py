"""How to cite: the front page's "How to cite" block and the report's link to the repository, all from the
repository's CITATION.cff (Citation File Format 1.2.0), the one place that holds them. The paper is its
`preferred-citation`; the reproduction (this code and its published results) its top-level keys. The address
(`repository-code`) is optional: without one (the repository has no public address yet) nothing links it, and
the reproduction's citation points to the commit that the report's provenance names instead."""
from __future__ import annotations

import re
from functools import lru_cache

from .. import config as C

RESOURCES = ["CITATION.cff"]
CITATION = C.REPO_ROOT / "CITATION.cff"


@lru_cache(maxsize=None)
def citation() -> dict:
    """CITATION.cff as a dict (yaml)."""
    import yaml

    return yaml.safe_load(CITATION.read_text())


def repository_url() -> str | None:
    """The repository's address (`repository-code`), or None where CITATION.cff gives none."""
    return citation().get("repository-code") or None


NO_ADDRESS_NOTE = "code and published results: the repository's commit named in the report's provenance"


def _names(authors: list[dict]) -> list[str]:
    """'Family, Given' per person, or an entity's `name`."""
    return [a["name"] if "name" in a else f"{a['family-names']}, {a['given-names']}" for a in authors]


def _arxiv(ref: dict) -> str | None:
    ids = [i["value"] for i in ref.get("identifiers", []) if str(i.get("value", "")).startswith("arXiv:")]
    return ids[0] if ids else None


def _bibtex(kind: str, key: str, fields: dict[str, str]) -> str:
    width = max(map(len, fields))
    body = ",\n".join(f"  {k.ljust(width)} = {{{v}}}" for k, v in fields.items())
    return f"@{kind}{{{key},\n{body}\n}}"


def paper_bibtex() -> str:
    """The paper's BibTeX entry, from `preferred-citation`; the key is first author + year + first title word."""
    ref = citation()["preferred-citation"]
    arxiv = _arxiv(ref)
    first_word = re.sub(r"\W", "", ref["title"].split()[0]).lower()
    key = f"{ref['authors'][0]['family-names'].lower()}{ref['year']}{first_word}"
    fields = {"title": ref["title"], "author": " and ".join(_names(ref["authors"])),
              "journal": f"{ref['journal']} {arxiv}" if arxiv else ref["journal"], "year": str(ref["year"])}
    if arxiv:
        fields |= {"eprint": arxiv.split(":", 1)[1], "archivePrefix": "arXiv"}
    if ref.get("url"):
        fields["url"] = ref["url"]
    return _bibtex("article", key, fields)


def reproduction_citation() -> str:
    """One line that cites the reproduction: authors, title, version, kind, license and, where it has one, address."""
    c = citation()
    line = (f"{'; '.join(_names(c['authors']))}. {c['title']}. Version {c['version']}, {c['type']}, "
            f"{c['license']} license.")
    url = repository_url()
    return f"{line} {url}" if url else line


def reproduction_bibtex() -> str:
    """The reproduction as a BibTeX @software entry: its `url` where the repository has an address, otherwise a
    `note` that the code and published results are the commit the report's provenance names."""
    c = citation()
    url = repository_url()
    fields = {"title": c["title"],
              "author": " and ".join(f"{{{n}}}" if "," not in n else n for n in _names(c["authors"])),
              "version": str(c["version"]), "license": c["license"]}
    fields |= {"url": url} if url else {"note": NO_ADDRESS_NOTE}
    return _bibtex("software", "aalp_reproduction", fields)


def cite_block() -> dict:
    """What the front page's "How to cite" block shows; `repository` is None where there is no address."""
    return {"paper": paper_bibtex(), "reproduction": reproduction_citation(), "bibtex": reproduction_bibtex(),
            "repository": repository_url(), "license": citation()["license"]}
