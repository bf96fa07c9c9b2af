"""Pods run restricted: checkov (the IaC scanner) on every object Helm renders and every object the
program creates itself, and the Pod Security Admission level of each namespace of the stack.

The stack's own objects pass every check. A chart object's failed check is either fixed through
values or waived in tests/walls/checkov_waivers.yaml with its reason; a new failure fails, and so does
a waiver that is no longer needed.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from model import pod_security
from tests.cluster_objects import chart_objects, own_objects, pod_spec
from tests.configs import homelab_config
from tools.offline_engine import ROOT

WAIVERS = yaml.safe_load((Path(__file__).parent / "checkov_waivers.yaml").read_text())
# Its own venv (`make test`): checkov pins packaging<24, the program's Pulumi needs >=26.
CHECKOV = str(ROOT / ".venv-checkov" / "bin" / "checkov")
# Cluster-wide definitions checkov has no check for; the largest part of the render by far.
NOT_SCANNED = {"CustomResourceDefinition"}


def _write(objects: list[dict], directory: Path) -> None:
    """One object per file: checkov silently skips a file it cannot parse (the operator's CRDs)."""
    directory.mkdir(parents=True)
    for i, obj in enumerate(o for o in objects if o.get("kind") not in NOT_SCANNED):
        (directory / f"{i:04d}-{obj['kind']}.yaml").write_text(yaml.safe_dump(obj, sort_keys=False))


def checkov(directory: Path) -> dict:
    assert Path(CHECKOV).is_file(), "checkov is not installed: `make .venv-checkov/.requirements-sha256` (requirements-checkov.txt; `make test` does it)"
    # No network here: skip the lookup of Prisma Cloud's check names, and the version check.
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_SKIP_VERSION_CHECK": "TRUE"}
    done = subprocess.run([CHECKOV, "--directory", str(directory), "--framework", "kubernetes", "--output", "json",
                           "--compact", "--skip-download"], capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode in (0, 1), done.stderr[-3000:]
    report = json.loads(done.stdout)
    return report[0] if isinstance(report, list) else report


@pytest.fixture(scope="module")
def scan(stack_manifests, tmp_path_factory):
    """checkov's failed checks, split into the charts' objects and the stack's own."""
    directory = tmp_path_factory.mktemp("checkov")
    _write(chart_objects(stack_manifests), directory / "chart")
    own = own_objects(stack_manifests.rendered.recording)
    _write(own, directory / "stack")
    report = checkov(directory)
    failed = {"chart": [], "stack": []}
    for check in report["results"]["failed_checks"]:
        failed[check["file_path"].strip("/").split("/")[0]].append(check)
    return report, failed, own


def _failure(check: dict) -> str:
    return f"{check['resource']} {check['check_id']} ({check['check_name']})"


def _resource(check: dict) -> str:
    """Kind.namespace.name of a workload's check (a pod's graph check names its labels too)."""
    kind, namespace, name = check["resource"].split(".", 2)
    return f"{'Pod' if kind == 'Pod' else kind}.{namespace}.{name.split('.app.kubernetes.io')[0].split('.helm.sh')[0]}"


def _waived(check: dict) -> bool:
    return check["check_id"] in WAIVERS["everywhere"] or \
        check["check_id"] in WAIVERS["objects"].get(_resource(check), {})


def test_checkov_reads_every_object(scan, stack_manifests):
    report, _, own = scan
    workloads = [o for o in chart_objects(stack_manifests) + own if pod_spec(o)]
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["resource_count"] >= len(workloads) > 10


def test_the_stacks_own_objects_pass_every_check(scan):
    _, failed, _ = scan
    assert [_failure(c) for c in failed["stack"]] == []


def test_every_failed_check_on_a_chart_object_is_waived_with_its_reason(scan):
    _, failed, _ = scan
    unwaived = [_failure(c) for c in failed["chart"] if not _waived(c)]
    assert unwaived == [], "\n".join(unwaived)


def test_no_waiver_outlives_its_failure(scan, stack_manifests):
    report, failed, _ = scan
    scanned = {_resource(c) for c in report["results"]["failed_checks"] + report["results"]["passed_checks"]}
    failing = {(_resource(c), c["check_id"]) for c in failed["chart"]}
    stale = [f"{resource} {check}" for resource, checks in WAIVERS["objects"].items() if resource in scanned
             for check in checks if (resource, check) not in failing]
    assert stale == []
    assert all(any(c["check_id"] == check for c in failed["chart"]) for check in WAIVERS["everywhere"])


def test_every_waiver_says_why():
    reasons = list(WAIVERS["everywhere"].values()) + [r for checks in WAIVERS["objects"].values() for r in checks.values()]
    assert all(isinstance(r, str) and len(r.split()) >= 8 for r in reasons)


# --- Pod Security Admission --------------------------------------------------------------------

def test_every_namespace_of_the_stack_carries_a_pod_security_level(scan):
    _, _, own = scan
    namespaces = {o["metadata"]["name"]: o["metadata"].get("labels", {}) for o in own if o.get("kind") == "Namespace"}
    assert namespaces
    for name, labels in namespaces.items():
        assert labels.get("pod-security.kubernetes.io/enforce") in ("restricted", "baseline", "privileged"), name
        # Where the level is lower, the API server still names every pod that falls short of restricted.
        assert labels.get("pod-security.kubernetes.io/warn") == "restricted", name
        assert labels.get("pod-security.kubernetes.io/audit") == "restricted", name


def _host_access(spec: dict) -> list[str]:
    """What of a pod spec needs the host (the Pod Security Standards' baseline forbids each)."""
    found = [key for key in ("hostNetwork", "hostPID", "hostIPC") if spec.get(key)]
    found += [f"hostPath {v['hostPath']['path']}" for v in spec.get("volumes") or [] if "hostPath" in v]
    found += [f"hostPort {p['hostPort']}" for c in spec.get("containers") or [] for p in c.get("ports") or [] if p.get("hostPort")]
    return found


def test_only_namespaces_whose_pods_need_the_host_are_below_restricted(scan, stack_manifests):
    _, _, own = scan
    levels = {o["metadata"]["name"]: o["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
              for o in own if o.get("kind") == "Namespace"}
    needing = {}
    for obj in chart_objects(stack_manifests) + own:
        found = pod_spec(obj)
        if found and _host_access(found[1]):
            needing.setdefault(obj["metadata"]["namespace"], []).append(obj["metadata"]["name"])
    assert {ns for ns, level in levels.items() if level != "restricted"} == set(needing)
    # Each lowered namespace names its workloads and why, in model/pod_security.py.
    reasons = pod_security.host_access(homelab_config())
    for namespace, workloads in needing.items():
        assert set(workloads) == {a.workload for a in reasons[namespace]}
