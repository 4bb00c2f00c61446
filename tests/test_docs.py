"""The documentation: the site builds with `mkdocs build --strict`, every Python example of README.md and docs/
runs, and the version is the same in the package, the changelog and the site.

Examples are the ```python blocks of a page. Those of one page run in order in one namespace, in a temporary
working directory. A block that cannot run in a test is written as ```text or ```bash, or follows a line
``<!-- skip-example: reason -->``: it is not run, and its page's test is reported as skipped with the reason.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

import fastconv as fc

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
#: what building the site needs: the docs extra (pip install -e ".[docs]")
DOCS_MODULES = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")

#: an opening fence and its language (a backtick in the info string makes inline code, not a fence)
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)[^`]*$")
SKIP_MARKER = re.compile(r"^\s*<!--\s*skip-example:\s*(?P<reason>.+?)\s*-->\s*$")


@dataclass(frozen=True)
class Example:
    """One ```python block: the line of its opening fence, its code, and the reason it is not run (or None)."""

    line: int
    code: str
    skip: str | None


def examples(page: Path) -> list[Example]:
    """The ```python blocks of a markdown page, in order (indented blocks, as in list items, dedented)."""
    found, lines = [], page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip().startswith(fence)
                    and not lines[j].strip().strip(fence[0])), len(lines))
        if opening["lang"] == "python":
            before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            marker = SKIP_MARKER.match(before)
            code = "\n".join(line[len(indent):] if line.startswith(indent) else line for line in lines[i + 1:end])
            found.append(Example(i + 1, code, marker["reason"] if marker else None))
        i = end + 1
    return found


def _name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


PAGES_WITH_EXAMPLES = [page for page in PAGES if examples(page)]


@pytest.mark.parametrize("page", PAGES_WITH_EXAMPLES, ids=_name)
def test_examples_run(page, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")  # an example that plots writes a file, never opens a window
    monkeypatch.chdir(tmp_path)  # files an example writes land here
    namespace = {"__name__": "__main__"}
    skipped = []
    try:
        for example in examples(page):
            where = f"{_name(page)}:{example.line}"
            if example.skip is not None:
                skipped.append(f"{where} ({example.skip})")
                continue
            # blank lines up to the fence: a traceback names the page's own line numbers
            code = compile("\n" * example.line + example.code, str(page), "exec")
            try:
                exec(code, namespace)
                continue
            except Exception:
                failure = traceback.format_exc()
            pytest.fail(f"the example at {where} failed:\n{failure}", pytrace=False)  # outside the except: no chain
    finally:
        fc.set_autotune(None)  # the default backend and threads are restored by conftest
    if skipped:
        pytest.skip(f"{len(examples(page)) - len(skipped)} examples ran; not run: {', '.join(skipped)}")


def test_the_runner_finds_examples_and_skip_markers(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n\n```python\nx = 1\n```\n\n<!-- skip-example: needs a cluster -->\n\n"
                    "```python\ny = 2\n```\n\n- item\n\n    ```python\n    z = 3\n    ```\n\n```bash\nls\n```\n")
    assert examples(page) == [Example(3, "x = 1", None), Example(9, "y = 2", "needs a cluster"),
                              Example(15, "z = 3", None)]


def test_the_readmes_links_lead_to_files():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\((?!https?://)([^)#\s]+)", readme)
    assert targets, "README.md links into the docs"
    assert [target for target in targets if not (ROOT / target).is_file()] == []


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False


def test_site_builds_strict(tmp_path):
    missing = [name for name in DOCS_MODULES if not _installed(name)]
    if missing:
        pytest.skip(f"the docs extra is not installed ({', '.join(missing)} missing): pip install -e '.[docs]'")
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                           str(ROOT / "mkdocs.yml"), "--site-dir", str(site)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    assert f"fastconv {fc.__version__}" in (site / "index.html").read_text(encoding="utf-8")
    reference = (site / "api" / "operations" / "index.html").read_text(encoding="utf-8")
    for name in ("conv2d", "conv2d_backward", "max_pool2d", "max_pool2d_backward", "avg_pool2d",
                 "avg_pool2d_backward"):
        assert f'id="fastconv.{name}"' in reference, f"the API reference lacks fastconv.{name}"


def test_the_changelog_names_the_package_version():
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    top = re.search(r"^## \[(?P<version>[^\]]+)\]", changelog, re.MULTILINE)
    assert top is not None and top["version"] == fc.__version__, (
        f"CHANGELOG.md's top entry is {top and top['version']!r}, fastconv.__version__ is {fc.__version__!r}")


def test_pyproject_takes_the_version_from_the_package():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    with open(ROOT / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)
    assert "version" in project["project"]["dynamic"] and "version" not in project["project"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "fastconv._version.__version__"}
