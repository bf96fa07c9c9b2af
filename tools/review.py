"""The pull request's preview comment: who gets paged for what, and what changed against the base branch.

    python -m tools.review --base <base build>/homelab --head build/homelab --out build/homelab/review.md

Compares two rendered stacks (tools/preview.py, tools/manifests.py): the paging table (alert ->
receivers, timing, recovery), the alerting and recording rules, the dashboards' panels and queries,
and the rendered manifests. The base's paging table is computed from its rendered rules and
alertmanager.yml when it has none (a base branch older than the table). CI posts the result as one
comment that each push edits (.github/workflows/pull-request.yml).
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from pathlib import Path

import yaml

from tools import paging

MARKER = "<!-- homelab-observability offline preview -->"
# GitHub refuses comments over 65536 characters; the rest is in the uploaded artifact.
LIMIT = 60000
DIFF_LINES = 40
LINE_WIDTH = 200  # a Secret's base64 data is one line of kilobytes


# --- paging ------------------------------------------------------------------------------------

def paging_rows(build: Path) -> dict[tuple, dict]:
    """(alert, severity, labels) -> its row of paging.json (computed when the stack has none)."""
    file = build / "alerting" / "paging.json"
    if file.is_file():
        rows = json.loads(file.read_text())
    else:
        from dataclasses import asdict

        rows = [asdict(p) for p in paging.paging(build)]
    return {(r["alert"], r["severity"], tuple(sorted(r["labels"].items()))): r for r in rows}


def _who(row: dict) -> str:
    return ", ".join(f"**{d['receiver']}**" for d in row["deliveries"]) or "nobody"


def _name(key: tuple) -> str:
    alert, severity, labels = key
    extra = ", ".join(f"{k}={v}" for k, v in labels)
    return f"**{alert}** ({severity}{'; ' + extra if extra else ''})"


def paging_changes(base: dict[tuple, dict], head: dict[tuple, dict]) -> list[str]:
    lines = []
    for key in sorted(head.keys() - base.keys()):
        lines.append(f"- new: {_name(key)} pages {_who(head[key])}")
    for key in sorted(base.keys() - head.keys()):
        lines.append(f"- gone: {_name(key)}, which paged {_who(base[key])}")
    for key in sorted(base.keys() & head.keys()):
        old, new = base[key], head[key]
        before = {d["receiver"]: d for d in old["deliveries"]}
        after = {d["receiver"]: d for d in new["deliveries"]}
        for receiver in [r for r in after if r not in before]:
            lines.append(f"- {_name(key)} now pages **{receiver}**")
        for receiver in [r for r in before if r not in after]:
            lines.append(f"- {_name(key)} no longer pages **{receiver}**")
        for receiver in [r for r in after if r in before]:
            changed = [f"{k} {before[receiver][k]} -> {after[receiver][k]}" for k in after[receiver]
                       if k not in ("receiver", "route") and after[receiver][k] != before[receiver][k]]
            if changed:
                lines.append(f"- {_name(key)} to **{receiver}**: {'; '.join(changed)}")
        if old.get("recovery") != new.get("recovery"):
            lines.append(f"- {_name(key)} recovery: {old.get('recovery') or 'none'} -> {new.get('recovery') or 'none'}")
    return lines


# --- rules, dashboards, manifests -------------------------------------------------------------

def rules(build: Path) -> dict[tuple, dict]:
    """(file, alert or record name, static labels) -> rule, for every rule of the rendered files."""
    found = {}
    for path in sorted((build / "prometheus" / "rules").glob("*.yaml")):
        for group in (yaml.safe_load(path.read_text()) or {}).get("groups") or []:
            for rule in group.get("rules") or []:
                name = rule.get("alert") or rule.get("record")
                found[(path.stem, name, tuple(sorted((rule.get("labels") or {}).items())))] = rule
    return found


def _diff(old: str, new: str) -> list[str]:
    lines = [line if len(line) <= LINE_WIDTH else line[:LINE_WIDTH] + " ..."
             for line in difflib.unified_diff(old.splitlines(), new.splitlines(), "base", "head", lineterm="", n=2)]
    if len(lines) > DIFF_LINES:
        lines = lines[:DIFF_LINES] + [f"... {len(lines) - DIFF_LINES} more lines"]
    return ["```diff", *lines, "```"] if lines else []


def _rule_name(key: tuple) -> str:
    file, name, labels = key
    extra = ", ".join(f"{k}={v}" for k, v in labels if k != "service")
    return f"`{name}`{' (' + extra + ')' if extra else ''} in {file}.yaml"


def rule_changes(base: dict[tuple, dict], head: dict[tuple, dict]) -> list[str]:
    lines = [f"- new: {_rule_name(k)}" for k in sorted(head.keys() - base.keys())]
    lines += [f"- gone: {_rule_name(k)}" for k in sorted(base.keys() - head.keys())]
    for key in sorted(base.keys() & head.keys()):
        old, new = base[key], head[key]
        changed = [k for k in ("expr", "for", "annotations") if old.get(k) != new.get(k)]
        if changed:
            lines.append(f"- changed {', '.join(changed)}: {_rule_name(key)}")
            lines += _diff(yaml.safe_dump({k: old.get(k) for k in changed}, sort_keys=True, width=120),
                           yaml.safe_dump({k: new.get(k) for k in changed}, sort_keys=True, width=120))
    return lines


def dashboards(build: Path) -> dict[str, dict]:
    """uid -> {"title", "panels": {panel title: {refId: query}}} of the dashboards sent to Grafana."""
    from model.grafana.dashboards import iter_panels

    found = {}
    for path in sorted((build / "grafana" / "dashboards").glob("*.json")):
        model = json.loads(path.read_text())
        panels = {}
        for panel in iter_panels(model):
            if panel.get("type") == "row":
                continue
            title = panel.get("title") or f"panel {panel.get('id')}"
            panels[title] = {t.get("refId", "?"): t.get("expr") or t.get("query") or "" for t in panel.get("targets", [])}
        found[model["uid"]] = {"title": model.get("title", model["uid"]), "panels": panels}
    return found


def dashboard_changes(base: dict[str, dict], head: dict[str, dict]) -> list[str]:
    lines = [f"- new dashboard **{head[u]['title']}** ({len(head[u]['panels'])} panels)" for u in sorted(head.keys() - base.keys())]
    lines += [f"- gone: dashboard **{base[u]['title']}**" for u in sorted(base.keys() - head.keys())]
    for uid in sorted(base.keys() & head.keys()):
        old, new = base[uid]["panels"], head[uid]["panels"]
        where = f"**{head[uid]['title']}**"
        lines += [f"- {where}: new panel '{t}'" for t in new if t not in old]
        lines += [f"- {where}: panel '{t}' gone" for t in old if t not in new]
        for title in [t for t in new if t in old]:
            for ref in sorted(old[title].keys() | new[title].keys()):
                before, after = old[title].get(ref), new[title].get(ref)
                if before != after:
                    lines.append(f"- {where} / '{title}' query {ref}:")
                    lines += _diff(before or "", after or "")
    return lines


_KIND = re.compile(r"^kind: *(\S+)", re.M)
_METADATA = re.compile(r"^metadata:\n((?:[ \t]+.*\n?|\n)*)", re.M)


def manifests(build: Path) -> dict[tuple, str]:
    """(release, kind, namespace, name) -> the object's text, of build/<stack>/manifests/. Compared as
    text, unparsed: the CRDs are megabytes."""
    found = {}
    for path in sorted((build / "manifests").glob("*.yaml")):
        for document in re.split(r"(?m)^---[ \t]*\n", path.read_text()):
            kind = _KIND.search(document)
            if not kind:
                continue  # the file's header
            meta = _METADATA.search(document)
            fields = dict(re.findall(r"^  (name|namespace): *(.+)$", meta.group(1), re.M)) if meta else {}
            key = (path.stem, kind.group(1), fields.get("namespace", "").strip('"'), fields.get("name", "?").strip('"'))
            found[key] = document
    return found


def manifest_changes(base: dict[tuple, str], head: dict[tuple, str]) -> list[str]:
    def name(key: tuple) -> str:
        release, kind, namespace, obj = key
        return f"{kind} `{namespace + '/' if namespace else ''}{obj}` of {release}"

    lines = [f"- new: {name(k)}" for k in sorted(head.keys() - base.keys())]
    lines += [f"- gone: {name(k)}" for k in sorted(base.keys() - head.keys())]
    for key in sorted(base.keys() & head.keys()):
        if base[key] != head[key]:
            lines.append(f"- changed: {name(key)}")
            lines += _diff(base[key], head[key])
    return lines


# --- the comment ------------------------------------------------------------------------------

def _section(title: str, lines: list[str], what: str) -> list[str]:
    return [f"### {title}", "", *(lines or [f"No change to {what}."]), ""]


def review(base: Path, head: Path) -> str:
    stack = head.name
    parts = [MARKER, f"## Offline preview of stack `{stack}` against the base branch", ""]
    head_paging = head / "alerting" / "paging.md"
    if (head / "alerting" / "paging.json").is_file():
        parts += _section("Who gets paged: changes", paging_changes(paging_rows(base), paging_rows(head)), "who gets paged")
    else:
        reason = head_paging.read_text().strip().splitlines()[-1] if head_paging.is_file() else "Not rendered."
        parts += ["### Who gets paged", "", reason, ""]
    parts += _section("Rules", rule_changes(rules(base), rules(head)), "the rules")
    parts += _section("Dashboards (panel titles and queries)", dashboard_changes(dashboards(base), dashboards(head)),
                      "the dashboards' panels and queries")
    if (head / "manifests").is_dir():
        changes = manifest_changes(manifests(base), manifests(head))
        objects = sum(1 for line in changes if line.startswith("- "))
        parts += ["### Rendered manifests", "", f"<details><summary>{objects} objects changed</summary>", "", *changes,
                  "</details>", ""] if changes else _section("Rendered manifests", [], "the rendered manifests")
    if head_paging.is_file() and (head / "alerting" / "paging.json").is_file():
        table = head_paging.read_text().split("\n", 2)[-1]
        parts += ["<details><summary>Who gets paged for what (the whole table)</summary>", "", table, "</details>", ""]
    text = "\n".join(parts)
    if len(text) > LIMIT:
        text = text[:LIMIT].rsplit("\n", 1)[0] + (
            f"\n\n... cut at {LIMIT} characters: the whole preview is the workflow's offline-preview-{stack} artifact.\n")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.review", description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, required=True, help="the base branch's build/<stack>")
    parser.add_argument("--head", type=Path, required=True, help="this branch's build/<stack>")
    parser.add_argument("--out", type=Path, help="write the comment here (default: stdout)")
    args = parser.parse_args(argv)
    for build in (args.base, args.head):
        if not (build / "resources.json").is_file():
            print(f"error: {build} is not a rendered stack (no resources.json): run make preview there", file=sys.stderr)
            return 2
    try:
        text = review(args.base, args.head)
    except paging.PagingUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
