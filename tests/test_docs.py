"""The README stays a front door, and every page it leads to exists.

Links are checked the way GitHub renders them: a relative link names a file in
the checkout, and a ``#fragment`` names a heading of that file (GitHub's slug:
lower case, punctuation dropped, spaces to hyphens, repeats numbered).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
MAX_README_LINES = 150

_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
_CODE = re.compile(r"`[^`\n]*`")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def _prose(text: str) -> str:
    """The text without code blocks or code spans, where brackets are not links."""
    return _CODE.sub("", _FENCE.sub("", text))


def _code(text: str) -> str:
    """Only the code blocks and code spans: where a command is shown to be typed."""
    blocks = [match.group(0) for match in _FENCE.finditer(text)]
    return "\n".join(blocks + _CODE.findall(_FENCE.sub("", text)))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading (before numbering repeats)."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"\s", "-", re.sub(r"[^\w\- ]", "", text))


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for heading in _HEADING.findall(_FENCE.sub("", path.read_text(encoding="utf-8"))):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def relative_links(path: Path) -> list[str]:
    return [target for target in _LINK.findall(_prose(path.read_text(encoding="utf-8")))
            if not re.match(r"[a-z][a-z0-9+.-]*:", target)]


def test_the_readme_is_a_front_door_of_at_most_150_lines():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines"


def test_the_slug_follows_github():
    assert slug("(5) Chaos: every job ends by itself (issue 15)") == "5-chaos-every-job-ends-by-itself-issue-15"
    assert slug("The queue's own cost") == "the-queues-own-cost"
    assert slug("Pick a threshold: `tango sweep`") == "pick-a-threshold-tango-sweep"
    assert slug("`recipe_seeds.py`: the recipe") == "recipe_seedspy-the-recipe"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_names_an_existing_file_and_heading(page: Path):
    broken = []
    for target in relative_links(page):
        file_part, _, fragment = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            broken.append(f"{target}: no heading #{fragment} in {dest.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_every_docs_page_is_one_click_from_the_readme():
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in relative_links(README)}
    unreachable = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert not unreachable, f"not linked from README.md: {unreachable}"


def test_every_tango_command_the_readme_names_exists():
    named = set(re.findall(r"\btango ([a-z][a-z0-9-]*)", _code(README.read_text(encoding="utf-8"))))
    assert named, "the README names no tango command"
    missing = sorted(named - set(cli.commands))
    assert not missing, f"README.md names commands the CLI lacks: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_option_shown_on_a_tango_command_line_exists(page: Path):
    code = re.sub(r"\\\n\s*", " ", _code(page.read_text(encoding="utf-8")))  # join continued lines
    unknown = []
    for name, args in re.findall(r"\btango ([a-z][a-z0-9-]*)((?:[ \t]+[^\s#;&|)]+)*)", code):
        command = cli.commands.get(name)
        if command is None:
            continue  # a name that is not a command is reported for the README above
        spelled = {opt for param in command.params for opt in [*param.opts, *param.secondary_opts]}
        unknown += [f"tango {name} {opt}" for opt in re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", args)
                    if opt not in spelled]
    assert not unknown, f"{page.relative_to(ROOT)} shows options the CLI lacks: {sorted(set(unknown))}"
