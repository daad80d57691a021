"""Every relative link in README.md and the docs resolves: to a file or folder of the repository, and a
``#anchor`` to a heading of its target as GitHub names it, so a newcomer following a link never lands nowhere.

Links inside code (fenced or indented blocks, inline code spans) are not links; external links (``https:``,
``mailto:``) are not checked.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]

LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")  # [text](target), ![alt](target)
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")  # [label]: target
HTML_LINK = re.compile(r"<(?:a|img)\s[^>]*?(?:href|src)=\"([^\"]+)\"", re.IGNORECASE)
HTML_ANCHOR = re.compile(r"<a\s[^>]*?(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^\s{0,3}(```|~~~)")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def documents(root: Path) -> list[Path]:
    """The pages a reader of the repository starts from: the README, every docs page, the CHANGELOG and the
    benchmarks' READMEs."""
    found = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    extra = (root / "CHANGELOG.md", root / "benchmarks" / "README.md", root / "benchmarks" / "results" / "README.md")
    found += [path for path in extra if path.is_file()]
    return found


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of the text outside fenced and indented code blocks."""
    lines, fence, previous_blank, in_indented = [], None, True, False
    for number, line in enumerate(text.splitlines(), 1):
        opening = FENCE.match(line)
        if fence:
            if opening and opening.group(1) == fence:
                fence = None
            continue
        if opening:
            fence = opening.group(1)
            continue
        indented = line.startswith("    ") or line.startswith("\t")
        in_indented = indented and (previous_blank or in_indented) and line.strip() != ""
        previous_blank = line.strip() == ""
        if in_indented:
            continue
        lines.append((number, line))
    return lines


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: its text, lower-cased, without punctuation, spaces as hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading counts by its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a Markdown file offers: its headings' (repeats numbered -1, -2, … as GitHub does) and
    explicit ``<a name=…>`` / ``id=…`` anchors."""
    found, seen = set(), {}
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        heading = HEADING.match(line)
        if heading:
            anchor = github_anchor(heading.group(2))
            count = seen.get(anchor, 0)
            seen[anchor] = count + 1
            found.add(anchor if count == 0 else f"{anchor}-{count}")
        found.update(HTML_ANCHOR.findall(line))
    return found


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every link in a Markdown file's prose."""
    found = []
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        line = re.sub(r"`[^`\n]*`", lambda code: " " * len(code.group()), line)  # inline code holds no links
        reference = REFERENCE.match(line)
        targets = [reference.group(1)] if reference else []
        targets += LINK.findall(line) + HTML_LINK.findall(line)
        found += [(number, target) for target in targets]
    return found


def broken_links(pages: list[Path], root: Path) -> list[str]:
    """One line per relative link in ``pages`` that does not resolve inside ``root``, naming page, line and
    target."""
    problems, known_anchors = [], {}
    root = root.resolve()
    for page in pages:
        for number, target in links(page):
            if SCHEME.match(target):
                continue
            where = f"{page.relative_to(root)}:{number}: {target}"
            path_part, _, anchor = target.partition("#")
            path_part = unquote(path_part)
            if not path_part:
                destination = page.resolve()
            elif path_part.startswith("/"):
                destination = (root / path_part.lstrip("/")).resolve()
            else:
                destination = (page.parent / path_part).resolve()
            if not destination.is_relative_to(root):
                problems.append(f"{where}: leads outside the repository")
                continue
            if not destination.exists():
                problems.append(f"{where}: no such file or folder")
                continue
            if anchor and destination.is_file() and destination.suffix == ".md":
                if destination not in known_anchors:
                    known_anchors[destination] = anchors(destination)
                if unquote(anchor) not in known_anchors[destination]:
                    problems.append(f"{where}: no heading with this anchor in {destination.relative_to(root)}")
    return problems


def test_every_relative_link_in_readme_and_docs_resolves():
    pages = documents(ROOT)
    assert ROOT / "README.md" in pages and ROOT / "docs" / "numbers.md" in pages
    checked = [target for page in pages for _, target in links(page) if not SCHEME.match(target)]
    assert len(checked) >= 50, f"only {len(checked)} relative links found: is the link pattern still right?"
    assert broken_links(pages, ROOT) == []


@pytest.mark.parametrize(("heading", "anchor"), [
    ("Is one model really better? `lrbench compare`", "is-one-model-really-better-lrbench-compare"),
    ("register_protocols(register)", "register_protocolsregister"),
    ('Identification protocols (`kind = "identification"`)', "identification-protocols-kind--identification"),
    ("How lrbench measures, and how the seed project did", "how-lrbench-measures-and-how-the-seed-project-did"),
    ("Who is in each pair: from the protocol, written into scores.csv",
     "who-is-in-each-pair-from-the-protocol-written-into-scorescsv"),
    ("The demo: the seed's experiment on synthetic faces", "the-demo-the-seeds-experiment-on-synthetic-faces"),
    ("DF 1–13 (12×12 px)", "df-113-1212-px"),
])
def test_anchors_are_named_as_github_names_them(heading, anchor):
    assert github_anchor(heading) == anchor


def test_each_kind_of_broken_link_is_reported_and_nothing_else(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# Page\n\n## Use `run` (fast)\n\n## Use `run` (fast)\n")
    (tmp_path / "README.md").write_text(
        "# Title\n\n"
        "[fine](docs/page.md) [fine anchor](docs/page.md#use-run-fast) [repeat](docs/page.md#use-run-fast-1)\n"
        "[folder](docs/) [here](#title) [web](https://example.org/missing.md) [mail](mailto:a@b.c)\n"
        "[missing](docs/missing.md)\n"
        "![missing image](docs/img/figure.png)\n"
        "[bad anchor](docs/page.md#use-run)\n"
        "[bad own anchor](#no-such-heading)\n"
        "[outside](../elsewhere.md)\n"
        "[ref]: docs/gone.md\n"
        '<img src="docs/img/other.png" alt="">\n'
        "`[in code](docs/not-checked.md)`\n\n"
        "```\n[in a fence](docs/not-checked.md)\n```\n\n"
        "    [in an indented block](docs/not-checked.md)\n"
    )
    problems = broken_links([tmp_path / "README.md"], tmp_path)
    assert problems == [
        "README.md:5: docs/missing.md: no such file or folder",
        "README.md:6: docs/img/figure.png: no such file or folder",
        "README.md:7: docs/page.md#use-run: no heading with this anchor in docs/page.md",
        "README.md:8: #no-such-heading: no heading with this anchor in README.md",
        "README.md:9: ../elsewhere.md: leads outside the repository",
        "README.md:10: docs/gone.md: no such file or folder",
        "README.md:11: docs/img/other.png: no such file or folder",
    ]


def test_a_deliberately_broken_copy_of_the_docs_fails(tmp_path):
    """The real pages, copied: removing a page they link to, or renaming a heading they link to, is caught."""
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    before = set(broken_links(documents(tmp_path), tmp_path))  # links to files left out of the copy

    (tmp_path / "docs" / "numbers.md").unlink()
    removed = set(broken_links(documents(tmp_path), tmp_path)) - before
    assert removed and all("numbers.md" in problem for problem in removed)
    assert any(problem.startswith("README.md:") for problem in removed)

    shutil.copy(ROOT / "docs" / "numbers.md", tmp_path / "docs" / "numbers.md")
    evaluating = tmp_path / "docs" / "evaluating.md"
    text = evaluating.read_text(encoding="utf-8")
    assert "\n## Evaluate your own faces\n" in text
    evaluating.write_text(text.replace("\n## Evaluate your own faces\n", "\n## Your own faces\n"), encoding="utf-8")
    renamed = set(broken_links(documents(tmp_path), tmp_path)) - before
    assert renamed and all("#evaluate-your-own-faces" in problem for problem in renamed)
