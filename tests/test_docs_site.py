"""The documentation site builds with ``mkdocs build --strict`` and documents every public name.

* the build (mkdocs-material + mkdocstrings, see mkdocs.yml) logs no warning: strict mode
  already fails on broken Markdown links, missing anchors and nav entries without a page;
* every internal link and anchor of the rendered HTML resolves (this also covers links
  written inside docstrings, which mkdocs does not validate);
* every name in the ``__all__`` of ``asyncgo`` and of each public submodule has an anchor
  (``id="asyncgo.sync.Mutex"``) in the rendered reference.

Skipped when mkdocs is not installed (``pip install -e '.[docs]'``).
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

pytest.importorskip("mkdocs")
pytest.importorskip("mkdocstrings")
pytest.importorskip("material")

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "asyncgo"


def _public_modules() -> dict[str, list[str]]:
    """``{dotted module name: its __all__}`` for every module outside an ``_underscore`` path."""
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if any(p.startswith("_") for p in parts):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
            ):
                found[".".join(parts)] = list(ast.literal_eval(node.value))
    return found


# The pytest plugin is an entry point, not an API: its fixtures are documented in
# docs/diagnostics.md, not in the reference.
NOT_IN_REFERENCE = {"asyncgo.testing.pytest_plugin"}


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("id", "name") and value:
                self.ids.add(value)
            if name == "href" and value and tag == "a":
                self.links.append(value)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{log}"
    return out, log


def test_build_has_no_warnings(site: tuple[Path, str]) -> None:
    _, log = site
    warnings = [line for line in log.splitlines() if re.match(r"\s*(WARNING|ERROR)\b", line)]
    assert not warnings, "\n".join(warnings)


def test_internal_links_resolve(site: tuple[Path, str]) -> None:
    out, _ = site
    pages: dict[Path, _Page] = {}
    for html in out.rglob("*.html"):
        parser = _Page()
        parser.feed(html.read_text(encoding="utf-8"))
        pages[html.resolve()] = parser
    assert len(pages) > 10
    broken = []
    checked = 0
    for html, page in pages.items():
        if html.name == "404.html":
            continue
        for link in page.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith(("mailto:", "javascript:")):
                continue
            checked += 1
            target = html if not parts.path else (html.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if target.suffix != ".html":
                if not target.exists():
                    broken.append(f"{html.relative_to(out.resolve())}: {link}")
                continue
            if target not in pages:
                broken.append(f"{html.relative_to(out.resolve())}: {link}")
            elif parts.fragment and unquote(parts.fragment) not in pages[target].ids:
                broken.append(f"{html.relative_to(out.resolve())}: {link} (no such anchor)")
    assert checked > 100
    assert not broken, "broken internal links:\n" + "\n".join(sorted(broken))


def test_every_public_name_is_in_the_reference(site: tuple[Path, str]) -> None:
    out, _ = site
    ids: set[str] = set()
    for html in (out / "reference").rglob("*.html"):
        parser = _Page()
        parser.feed(html.read_text(encoding="utf-8"))
        ids |= parser.ids
    modules = _public_modules()
    assert "asyncgo" in modules and "asyncgo.sync" in modules
    missing = [
        f"{module}.{name}"
        for module, names in modules.items()
        if module not in NOT_IN_REFERENCE
        for name in names
        if f"{module}.{name}" not in ids
    ]
    assert not missing, "public names with no reference entry: " + ", ".join(missing)


def test_every_public_module_has_a_reference_page() -> None:
    directives = set()
    for page in (ROOT / "docs" / "reference").glob("*.md"):
        directives |= set(re.findall(r"^::: *([\w.]+)", page.read_text(encoding="utf-8"), re.M))
    missing = set(_public_modules()) - NOT_IN_REFERENCE - directives
    assert not missing, f"modules with no ::: block in docs/reference/: {sorted(missing)}"
