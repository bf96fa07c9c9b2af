"""What `pulumi preview`/`up` and `make preview` load imports nothing requirements.txt does not pin.

The program (__main__.py, components/, model/, the policy pack, the offline preview) runs in the
.venv that `make preview` builds from requirements.txt alone; the suite runs in a venv that also
holds requirements-dev.txt, where a missing pin goes unnoticed until a user's first command
fails. So the imports are read from the source (function-level ones included), project modules
are followed wherever they lead, and every third-party package reached must belong to a
distribution requirements.txt pins.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# What the Pulumi CLI and `make preview` load: the program, its packages, the policy pack, the preview.
ENTRY_POINTS = ["__main__.py", "components", "model", "policy", "tools/preview.py"]


def _module_file(name: str) -> Path | None:
    """The project's file for a dotted module name, None when it is not the project's."""
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module an import statement in the file names, relative imports resolved."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1] if package else []
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return {name for name in found if name}


def import_closure(entry_points: list[str]) -> dict[str, set[str]]:
    """Third-party top-level module -> the project files that import it (each as the chain of
    imports that reached it), following project imports."""
    queue = [p for e in entry_points for p in ((ROOT / e).rglob("*.py") if (ROOT / e).is_dir() else [ROOT / e])]
    seen: set[Path] = set()
    external: dict[str, set[str]] = {}
    reached_from: dict[Path, Path] = {}
    while queue:
        path = queue.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports(path):
            top = name.split(".")[0]
            if top == "__future__" or top in sys.stdlib_module_names:
                continue
            own = _module_file(name)
            if own is not None:
                # a package's __init__ runs before any of its modules
                parts = name.split(".")
                for module in [own] + [p for i in range(1, len(parts)) if (p := _module_file(".".join(parts[:i])))]:
                    reached_from.setdefault(module, path)
                    queue.append(module)
            elif not (ROOT / top).exists():
                external.setdefault(top, set()).add(_chain(path, reached_from))
    return external


def _chain(path: Path, reached_from: dict[Path, Path]) -> str:
    """`a.py <- b.py <- entry.py`: how the walk reached a file."""
    links = [path]
    while links[-1] in reached_from and reached_from[links[-1]] not in links:
        links.append(reached_from[links[-1]])
    return " <- ".join(str(p.relative_to(ROOT)) for p in links)


def requirement_pins(requirements: Path) -> dict[str, str]:
    """Distribution (canonical name) -> pinned version of a requirements file's own lines."""
    pins = {}
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            name = re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0]
            pins[_canonical(name)] = line.partition("==")[2].strip()
    return pins


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_program_imports_only_what_requirements_txt_pins():
    pinned = set(requirement_pins(ROOT / "requirements.txt"))
    providers = importlib.metadata.packages_distributions()
    problems = []
    for module, importers in sorted(import_closure(ENTRY_POINTS).items()):
        distributions = {_canonical(d) for d in providers.get(module, [])}
        if not distributions:
            problems.append(f"{module} (imported by {', '.join(sorted(importers))}) is installed by no distribution")
        elif not distributions & pinned:
            problems.append(f"{module} (distribution {', '.join(sorted(distributions))}; imported by "
                            f"{', '.join(sorted(importers))}) is not pinned in requirements.txt")
    assert not problems, "the program would fail in the .venv `make preview` builds:\n" + "\n".join(problems)


def test_the_closure_follows_function_level_and_relative_imports(tmp_path, monkeypatch):
    """The walk itself: a lazy import two modules away is found, stdlib and project modules are not reported."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("import json\nfrom . import b\n")
    (tmp_path / "pkg" / "b.py").write_text("def check():\n    from other.c import X\n")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "__init__.py").write_text("import yaml\n")
    (tmp_path / "other" / "c.py").write_text("import jsonschema\nX = 1\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert import_closure(["pkg/a.py"]) == {"yaml": {"other/__init__.py <- pkg/b.py <- pkg/a.py"},
                                            "jsonschema": {"other/c.py <- pkg/b.py <- pkg/a.py"}}
