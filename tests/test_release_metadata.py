"""One place for the version, and the files that state it: ``simvis_widgets.__version__`` (a literal) is what
pyproject.toml's dynamic version reads, what CITATION.cff states and the newest released heading of
CHANGELOG.md. CITATION.cff is checked against the Citation File Format 1.2.0 keys; CHANGELOG.md against the
Keep a Changelog layout. (The built wheel's own metadata is checked by tests/test_wheel.py.)"""

from __future__ import annotations

import ast
import datetime as dt
import re
from pathlib import Path

import pytest
import yaml
from packaging.version import Version

import simvis_widgets

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[1]
CHANGELOG = REPO / "CHANGELOG.md"
CITATION = REPO / "CITATION.cff"

# Citation File Format 1.2.0 (schema.json of citation-file-format/citation-file-format): the keys it allows.
CFF_REQUIRED = {"authors", "cff-version", "message", "title"}
CFF_KEYS = CFF_REQUIRED | {
    "abstract", "commit", "contact", "date-released", "doi", "identifiers", "keywords", "license", "license-url",
    "preferred-citation", "references", "repository", "repository-artifact", "repository-code", "type", "url",
    "version",
}  # fmt: skip
CFF_REFERENCE_REQUIRED = {"authors", "title", "type"}
CFF_REFERENCE_KEYS = CFF_REFERENCE_REQUIRED | {
    "abbreviation", "abstract", "collection-doi", "collection-title", "collection-type", "commit", "conference",
    "contact", "copyright", "data-type", "database", "database-provider", "date-accessed", "date-downloaded",
    "date-published", "date-released", "department", "doi", "edition", "editors", "editors-series", "end",
    "entry", "filename", "format", "identifiers", "institution", "isbn", "issn", "issue", "issue-date",
    "issue-title", "journal", "keywords", "languages", "license", "license-url", "loc-end", "loc-start",
    "location", "medium", "month", "nihmsid", "notes", "number", "number-volumes", "pages", "patent-states",
    "pmcid", "publisher", "recipients", "repository", "repository-artifact", "repository-code", "scope",
    "section", "senders", "start", "status", "term", "thesis-type", "translators", "url", "version", "volume",
    "volume-title", "year", "year-original",
}  # fmt: skip
CFF_PERSON_KEYS = {
    "address", "affiliation", "alias", "city", "country", "email", "family-names", "fax", "given-names",
    "name-particle", "name-suffix", "orcid", "post-code", "region", "tel", "website",
}  # fmt: skip
CFF_ENTITY_KEYS = {
    "address", "alias", "city", "country", "date-end", "date-start", "email", "fax", "location", "name",
    "orcid", "post-code", "region", "tel", "website",
}  # fmt: skip
CFF_IDENTIFIER_TYPES = {"doi", "url", "swh", "other"}

KEEP_A_CHANGELOG_SECTIONS = ("Added", "Changed", "Deprecated", "Removed", "Fixed", "Security")
RELEASE_HEADING = re.compile(r"## \[(?P<version>[^\]]+)\] - (?P<date>\d{4}-\d{2}-\d{2})")


def _literal_version() -> str:
    """``__version__`` read from the source as setuptools reads it: a module-level string literal."""
    tree = ast.parse((REPO / "simvis_widgets" / "__init__.py").read_text())
    values = [
        node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and [getattr(t, "id", None) for t in node.targets] == ["__version__"]
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    ]
    assert len(values) == 1, "simvis_widgets/__init__.py needs exactly one literal __version__ = '...'"
    return values[0]


def _changelog() -> tuple[list[str], list[tuple[str, str, str]]]:
    """(the '## ' headings in order, [(version, date, body)] of the released sections)."""
    text = CHANGELOG.read_text()
    headings = re.findall(r"^## .*$", text, re.M)
    parts = re.split(r"^(## .*)$", text, flags=re.M)
    released = []
    for heading, body in zip(parts[1::2], parts[2::2]):
        match = RELEASE_HEADING.fullmatch(heading)
        if match:
            released.append((match["version"], match["date"], body))
    return headings, released


def test_version_lives_in_one_place() -> None:
    version = _literal_version()
    assert simvis_widgets.__version__ == version
    Version(version)  # PEP 440
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in project["project"], "the version is dynamic: set it in simvis_widgets/__init__.py"
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "simvis_widgets.__version__"}


def test_changelog_follows_keep_a_changelog_and_names_the_version() -> None:
    headings, released = _changelog()
    assert CHANGELOG.read_text().startswith("# Changelog\n")
    assert headings[0] == "## [Unreleased]", headings
    assert released, "no released version"
    assert len(released) == len(headings) - 1, [h for h in headings[1:] if not RELEASE_HEADING.fullmatch(h)]
    versions = [Version(v) for v, _, _ in released]
    dates = [dt.date.fromisoformat(d) for _, d, _ in released]
    assert versions == sorted(versions, reverse=True) and len(set(versions)) == len(versions), versions
    assert dates == sorted(dates, reverse=True), dates
    for version, _, body in released:
        sections = re.findall(r"^### (.*)$", body, re.M)
        assert sections and set(sections) <= set(KEEP_A_CHANGELOG_SECTIONS), (version, sections)
        assert re.search(r"^- ", body, re.M), f"{version}: no entries"
    newest = released[0][0]
    package = Version(simvis_widgets.__version__)
    if package.is_prerelease or package.is_devrelease:  # between releases: a pre-release of the next one
        assert package > Version(newest), (str(package), newest)
    else:
        assert str(package) == newest, f"__version__ {package} but the newest released heading is {newest}"


def test_changelog_calls_out_the_api_breaks() -> None:
    """The names removed or changed since 0.1.0 are in the Unreleased section, each under a Breaking entry."""
    text = CHANGELOG.read_text()
    unreleased = text.split("## [Unreleased]", 1)[1].split("\n## [", 1)[0]
    breaking = [entry for entry in re.split(r"\n(?=- )", unreleased) if "**Breaking:**" in entry]
    for name in ("Gallery.save", "Gallery.load", "ExactIndex", "FaissIndex", "cache_dir", ".view"):
        assert any(name in entry for entry in breaking), name
    # The removed names really are gone from the package (the changelog says so).
    import simvis_widgets.gallery as gallery

    assert not hasattr(gallery, "ExactIndex") and not hasattr(gallery, "FaissIndex")
    assert not hasattr(simvis_widgets.Gallery, "save") and not hasattr(simvis_widgets.Gallery, "load")


def test_citation_cff_is_valid_cff_1_2_0() -> None:
    cff = yaml.safe_load(CITATION.read_text())
    assert cff["cff-version"] == "1.2.0"
    assert CFF_REQUIRED <= set(cff), CFF_REQUIRED - set(cff)
    assert set(cff) <= CFF_KEYS, set(cff) - CFF_KEYS
    assert cff["type"] in ("software", "dataset")
    assert isinstance(cff["message"], str) and cff["message"].strip()
    _check_authors(cff["authors"])
    # The software's version and licence are the package's.
    assert isinstance(cff["version"], str) and cff["version"] == simvis_widgets.__version__
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert cff["license"] == project["license"]
    assert all(isinstance(k, str) for k in cff.get("keywords", []))

    paper = cff["preferred-citation"]
    assert CFF_REFERENCE_REQUIRED <= set(paper) and set(paper) <= CFF_REFERENCE_KEYS, set(paper) - CFF_REFERENCE_KEYS
    _check_authors(paper["authors"])
    for identifier in paper.get("identifiers", []):
        assert identifier["type"] in CFF_IDENTIFIER_TYPES and isinstance(identifier["value"], str), identifier


def test_citation_cites_the_paper() -> None:
    paper = yaml.safe_load(CITATION.read_text())["preferred-citation"]
    assert paper["type"] == "conference-paper"
    assert paper["title"] == "Visualizing Deep Similarity Networks"
    assert [(a["given-names"], a["family-names"]) for a in paper["authors"]] == [
        ("Abby", "Stylianou"),
        ("Richard", "Souvenir"),
        ("Robert", "Pless"),
    ]
    assert paper["year"] == 2019 and "WACV" in paper["collection-title"]
    assert paper["url"] == "https://arxiv.org/abs/1901.00536"


def test_readme_links_the_changelog_and_the_citation() -> None:
    readme = (REPO / "README.md").read_text()
    assert "](CHANGELOG.md)" in readme and "](CITATION.cff)" in readme


def _check_authors(authors: list[dict]) -> None:
    assert isinstance(authors, list) and authors
    for author in authors:
        if "name" in author:  # an entity
            assert set(author) <= CFF_ENTITY_KEYS and author["name"].strip(), author
        else:  # a person
            assert set(author) <= CFF_PERSON_KEYS and author.get("family-names", "").strip(), author
