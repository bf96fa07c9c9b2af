"""runbooks/<AlertName>.md: one per alert, the index the runbook hub shows, and the alert -> runbook check."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from model.facts.links import runbook_url

RUNBOOKS_DIR = Path(__file__).resolve().parents[2] / "runbooks"

RUNBOOK_INDEX_MARKER = "<!-- runbook-index -->"


@dataclass(frozen=True)
class Runbook:
    alert: str
    path: Path
    title: str


def list_runbooks(directory: Path = RUNBOOKS_DIR) -> list[Runbook]:
    """runbooks/<AlertName>.md, one per alert; its first heading is its title."""
    found = []
    for path in sorted(directory.glob("*.md")) if directory.is_dir() else []:
        if path.stem.upper() == "README":
            continue
        heading = next((line.lstrip("#").strip() for line in path.read_text().splitlines() if line.startswith("#")), path.stem)
        found.append(Runbook(path.stem, path, heading))
    return found


def defined_alerts(rule_files: Iterable[dict[str, Any]]) -> list[str]:
    """The names of the alerts of parsed Prometheus rule files, sorted, each once."""
    return sorted({rule["alert"] for doc in rule_files for group in doc.get("groups", [])
                   for rule in group.get("rules", []) if "alert" in rule})


def stack_runbooks(alerts: Iterable[str], directory: Path | None = None) -> tuple[list[Runbook], list[str]]:
    """(the runbooks of these alerts, the alerts that have none): a stack serves and lists only the
    runbooks of the alerts it defines (no Loki runbooks without logs)."""
    books = {book.alert: book for book in list_runbooks(directory or RUNBOOKS_DIR)}
    wanted = sorted(set(alerts))
    return [books[a] for a in wanted if a in books], [a for a in wanted if a not in books]


def runbook_index_markdown(runbooks: Iterable[Runbook], hub_url: str) -> str:
    rows = [f"| [{r.alert}]({runbook_url(hub_url, r.alert)}) | {r.title} |" for r in runbooks]
    if not rows:
        return f"{RUNBOOK_INDEX_MARKER}\nNo runbooks in `runbooks/` yet."
    return "\n".join([RUNBOOK_INDEX_MARKER, "| Alert | Runbook |", "| --- | --- |", *rows])


def runbook_problems(rules: Iterable[dict[str, Any]], runbooks_dir: Path, hub_url: str) -> list[str]:
    """What breaks the alert -> runbook link: `rules` are parsed Prometheus rule files.

    Every alerting rule needs annotations.runbook_url == <hub>/runbooks/<alert>.md with that
    file in runbooks_dir, and every runbook must name its alert (so a search finds it).
    """
    problems = []
    alerts = []
    for doc in rules:
        for group in doc.get("groups", []):
            for rule in group.get("rules", []):
                if "alert" in rule:
                    alerts.append((group.get("name", "?"), rule))
    for group, rule in alerts:
        name = rule["alert"]
        url = (rule.get("annotations") or {}).get("runbook_url")
        expected = runbook_url(hub_url, name)
        if not url:
            problems.append(f"{group}/{name}: no runbook_url annotation")
        elif url != expected:
            problems.append(f"{group}/{name}: runbook_url {url} is not {expected}")
        elif not (runbooks_dir / f"{name}.md").is_file():
            problems.append(f"{group}/{name}: runbook_url points to missing {runbooks_dir.name}/{name}.md")
    for book in list_runbooks(runbooks_dir):
        if not re.search(rf"\b{re.escape(book.alert)}\b", book.path.read_text()):
            problems.append(f"{book.path.name}: does not name its alert {book.alert}")
    return problems
