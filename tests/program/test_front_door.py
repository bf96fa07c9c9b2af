"""What a new user meets first: `make` alone, the version, the README and its links, a tree
that names no particular machine."""

from __future__ import annotations

import re
import subprocess
import sys

from tools.drill import scenarios
from tools.offline_engine import ROOT

def test_make_alone_lists_every_target_and_every_drill_scenario():
    makefile = (ROOT / "Makefile").read_text()
    phony = set(re.search(r"^\.PHONY:(.*)$", makefile, re.M).group(1).split())
    result = subprocess.run(["make", "--no-print-directory"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    listed = re.findall(r"^  make (\S+) +\S", result.stdout, re.M)
    assert sorted(listed) == sorted(phony), "every target has one `## <target> <what it does>` line"
    assert len(listed) == len(set(listed))
    shown = set(re.findall(r"^  (\S+) {2,}\S", result.stdout.split("Drill scenarios")[1], re.M))
    assert shown == {s.name for s in scenarios.SCENARIOS}


def test_the_version_is_written_once_and_the_changelog_opens_with_it():
    version = (ROOT / "VERSION").read_text().strip()
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    headings = re.findall(r"^## (\d+\.\d+\.\d+)\b", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert headings and headings[0] == version
    result = subprocess.run([sys.executable, "-m", "tools.preview", "--version"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == f"homelab-observability {version}"


def test_the_readme_is_a_front_door():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    setup = readme.split("## Set-up: two commands", 1)[1].split("\n## ", 1)[0]
    commands = re.search(r"```sh\n(.*?)```", setup, re.S).group(1).splitlines()
    assert [c.split()[:2] for c in commands] == [["make", "preview"], ["make", "test"]]
    assert "seed" not in readme.lower(), "the README names a document users do not have"


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.*)$", markdown, re.M)}


def test_every_link_between_the_projects_documents_resolves():
    documents = [ROOT / "README.md", ROOT / "CHANGELOG.md", ROOT / "vendor" / "README.md",
                 *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for document in documents:
        for target in re.findall(r"\]\(([^)\s]+)\)", document.read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            file = (document.parent / path).resolve() if path else document
            if not file.exists():
                broken.append(f"{document.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in _anchors(file.read_text()):
                broken.append(f"{document.relative_to(ROOT)}: {target} (no such heading)")
    assert broken == []


def test_no_file_names_a_path_of_one_particular_machine():
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True)
    found = []
    for name in tracked.stdout.split("\0"):
        path = ROOT / name
        if not name or not path.is_file() or path.suffix in {".gz", ".png", ".pdf"}:
            continue
        text = path.read_text(errors="replace")
        found += [f"{name}: {m.group()}" for m in re.finditer(r"/(?:work|home/\w+|root)/[\w./-]+", text)]
    assert found == []
