"""The documentation's promises that need no build: runnable snippets, one install command."""

import ast
import builtins
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
GUIDE_PAGES = sorted((ROOT / "doc" / "user_guide").glob("*.rst"))


def _python_snippets(page):
    text = page.read_text(encoding="utf-8")
    for match in re.finditer(r"\.\. code-block:: python\n\n((?:    .*\n|[ \t]*\n)+)", text):
        yield "\n".join(line[4:] for line in match.group(1).splitlines())


def _undefined_names(code):
    """Names a snippet reads but neither imports, assigns nor gets from builtins."""
    tree = ast.parse(code)
    defined = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            defined |= {alias.asname or alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            defined.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.arg):
            defined.add(node.arg)
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    return sorted(used - defined)


def test_the_undefined_name_check_can_fail():
    assert _undefined_names("codes = pipe.fit_transform(texts)") == ["pipe", "texts"]
    assert _undefined_names("import numpy as np\nX = np.ones(3)\nprint(X)") == []


@pytest.mark.parametrize("page", GUIDE_PAGES, ids=lambda page: page.stem)
def test_every_user_guide_snippet_defines_what_it_uses(page):
    for snippet in _python_snippets(page):
        assert _undefined_names(snippet) == [], f"{page.name}: a snippet uses undefined names\n{snippet}"


def test_the_docs_give_the_readme_install_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    index = (ROOT / "doc" / "index.rst").read_text(encoding="utf-8")
    commands = re.findall(r"pip install -e \"\.\[[a-z,]+\]\"", index)
    assert commands, "doc/index.rst gives no install command"
    for command in commands:
        assert command in readme


def test_the_project_files_agree_with_pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["license"] == "BSD-3-Clause" and project["project"]["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("BSD 3-Clause License")
    assert "## [Unreleased]" in (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert (ROOT / "sklearn_interp" / "py.typed").is_file()
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["sklearn_interp"]


def test_citation_file_and_citing_page_list_a_paper_for_each_of_the_eight():
    import yaml

    from test_public_api import THE_EIGHT

    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert citation["license"] == "BSD-3-Clause" and len(citation["references"]) == len(THE_EIGHT)
    citing = (ROOT / "doc" / "citing.rst").read_text(encoding="utf-8")
    for name in THE_EIGHT:
        assert f".{name}`" in citing, name
    for reference in citation["references"]:
        arxiv = reference["identifiers"][0]["value"]
        assert arxiv in citing, arxiv
