"""Offline preview: what `pulumi up` would create for a stack, without Proxmox, a cluster or the CLI.

    python -m tools.preview --stack homelab            # Pulumi.homelab.yaml
    python -m tools.preview --stack-file path/Pulumi.lab.yaml --out build

Prints a table of every resource and writes the rendered artifacts under build/<stack>/
(see ARTIFACTS). Exit status 2 with the list of problems when the stack config is wrong or a
provider would refuse an input; deprecations are printed as warnings.
"""

from __future__ import annotations

import argparse
import os
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import yaml

from tools.grafana_artifacts import write_grafana
from tools.hub_artifacts import write_runbook_hub
from tools.offline_engine import ROOT, ProviderCheckError, RecordedResource, Recording, StackFileError, run_program
from tools.provider_schemas import SchemaDataError, check_schema_files

VM_TYPE = "proxmoxve:index/vmLegacy:VmLegacy"
SNIPPET_TYPE = "proxmoxve:index/fileLegacy:FileLegacy"
HELM_RELEASE_TYPE = "kubernetes:helm.sh/v3:Release"


def _short_type(type_: str) -> str:
    package, _, rest = type_.partition(":")
    return f"{package}:{rest.rsplit(':', 1)[-1]}" if rest else type_


def _summary(resource: RecordedResource) -> str:
    i, o = resource.inputs, resource.options
    flags = []
    if o["protect"]:
        flags.append("protected")
    if o["ignoreChanges"]:
        flags.append("create-only: " + ",".join(o["ignoreChanges"]))
    if resource.type == VM_TYPE:
        disks = "+".join(f"{d['size']}G" for d in i.get("disks", []))
        ip = i["initialization"]["ipConfigs"][0]["ipv4"]["address"]
        net = i["networkDevices"][0]
        vlan = f" vlan {net['vlanId']}" if net.get("vlanId") else ""
        text = (f"node={i['nodeName']} id={i['vmId']} {i['cpu']['cores']} cores "
                f"{i['memory']['dedicated']} MB disks {disks} {ip} on {net['bridge']}{vlan} "
                f"tags={','.join(i.get('tags', []))}")
        return "; ".join([text] + flags)
    if resource.type == HELM_RELEASE_TYPE:
        return "; ".join([f"chart {i.get('chart')} {i.get('version')} in namespace {i.get('namespace')}"] + flags)
    if resource.type == SNIPPET_TYPE:
        return f"node={i['nodeName']} {i['datastoreId']}:snippets (secret content)"
    if "url" in i:
        return f"node={i['nodeName']} {i['url']}" if "nodeName" in i else str(i["url"])
    return "; ".join(flags)


def print_table(recording: Recording, out=sys.stdout) -> None:
    by_urn = {r.urn: r for r in recording.resources}
    rows = [("TYPE", "NAME", "PARENT", "SETTINGS")]
    for r in sorted(recording.resources, key=lambda r: r.urn):
        parent = by_urn[r.parent].name if r.parent in by_urn else "(stack)"
        rows.append((_short_type(r.type), r.name, parent, _summary(r)))
    widths = [max(len(row[c]) for row in rows) for c in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths)) + "  " + row[3], file=out)
    print(f"\n{len(recording.resources)} resources would be created in stack {recording.stack!r}.", file=out)


# --- artifacts ----------------------------------------------------------------------------

def write_resources(recording: Recording, out: Path) -> None:
    doc = [
        {"type": r.type, "name": r.name, "urn": r.urn, "parent": r.parent or None, "custom": r.custom,
         "options": r.options, "inputs": r.inputs}
        # Registration order varies between runs; a stable order keeps pull-request diffs honest.
        for r in sorted(recording.resources, key=lambda r: r.urn)
    ]
    text = json.dumps({"stack": recording.stack, "resources": doc, "outputs": recording.outputs}, indent=2, sort_keys=True)
    (out / "resources.json").write_text(recording.redact_text(text) + "\n")


def write_user_data(recording: Recording, out: Path) -> None:
    # Each VM waits for its snippet: that names the VM a snippet is for, whatever the resource names.
    vm_of_snippet = {urn: vm.inputs["name"] for vm in recording.of_type(VM_TYPE) for urn in vm.options["dependsOn"]}
    for snippet in recording.of_type(SNIPPET_TYPE):
        raw = recording.raw_inputs[snippet.urn]["sourceRaw"]
        target = out / "hosts" / vm_of_snippet[snippet.urn] / "user-data.yaml"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(recording.redact_text(raw["data"]))


class _BlockStyleDumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # libyaml: 5x faster
    """Multi-line strings (PromQL, templates) as literal blocks, as people write them."""

    def ignore_aliases(self, data):  # reviewers read each value in place, not &id001 anchors
        return True


_BlockStyleDumper.add_representer(
    str, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s else None))


# The engine hands maps back in its own order; these keys lead, as in the tools' docs.
LEADING_KEYS = ("name", "job_name", "alert", "record", "expr", "for", "receiver", "matchers", "continue",
                "global", "route", "groups", "interval", "rules")


def _canonical(doc):
    if isinstance(doc, dict):
        rank = {k: i for i, k in enumerate(LEADING_KEYS)}
        keys = sorted(doc, key=lambda k: (rank.get(k, len(rank)), k))
        return {k: _canonical(doc[k]) for k in keys}
    if isinstance(doc, list):
        return [_canonical(v) for v in doc]
    return doc


def dump_yaml(doc) -> str:
    return yaml.dump(_canonical(doc), Dumper=_BlockStyleDumper, sort_keys=False, width=120, allow_unicode=True)


def _helm_values(recording: Recording) -> dict[str, dict]:
    return {r.inputs.get("name", r.name): r.inputs.get("values") or {} for r in recording.of_type(HELM_RELEASE_TYPE)}


def _write(recording: Recording, target: Path, doc) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(recording.redact_text(dump_yaml(doc)))


def write_helm_values(recording: Recording, out: Path) -> None:
    """build/<stack>/helm/<release>.values.yaml: the values every Helm release is installed with."""
    for release in recording.of_type(HELM_RELEASE_TYPE):
        inputs = release.inputs
        name = inputs.get("name") or release.name
        header = (f"# Helm release {name}: chart {inputs.get('chart')} {inputs.get('version')} "
                  f"from {(inputs.get('repositoryOpts') or {}).get('repo')}, namespace {inputs.get('namespace')}\n")
        target = out / "helm" / f"{name}.values.yaml"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(recording.redact_text(header + dump_yaml(inputs.get("values") or {})))


def write_prometheus_config(recording: Recording, out: Path) -> None:
    """Rule files, scrape configs and alertmanager.yml exactly as the kube-prometheus-stack release gets them."""
    from model.facts.endpoints import KUBE_PROMETHEUS_RELEASE

    values = _helm_values(recording).get(KUBE_PROMETHEUS_RELEASE)
    if values is None:
        return
    for stem, doc in values.get("additionalPrometheusRulesMap", {}).items():
        _write(recording, out / "prometheus" / "rules" / f"{stem}.yaml", doc)
    scrape = values["prometheus"]["prometheusSpec"].get("additionalScrapeConfigs", [])
    _write(recording, out / "prometheus" / "scrape-configs.yaml", {"scrape_configs": scrape})
    remote = values["prometheus"]["prometheusSpec"].get("remoteWrite")
    if remote:
        from model.long_term import prometheus_remote_write

        # In prometheus.yml's own keys, as the operator writes it (and the long-term tests load it).
        _write(recording, out / "prometheus" / "remote-write.yaml", {"remote_write": prometheus_remote_write(remote)})
    _write(recording, out / "alertmanager" / "alertmanager.yml", values["alertmanager"]["config"])


def write_recovery(recording: Recording, out: Path) -> None:
    """build/<stack>/recovery/: the recovery service's config, fallback inventory and unit, exactly
    as the pbs host's cloud-config writes them (the drill runs the service on these)."""
    from model import recovery

    wanted = {recovery.CONFIG_PATH: "recovery.yml", recovery.INVENTORY_PATH: "fallback-inventory.yml",
              "/etc/systemd/system/recovery.service": "recovery.service"}
    for snippet in recording.of_type(SNIPPET_TYPE):
        doc = yaml.load(recording.raw_inputs[snippet.urn]["sourceRaw"]["data"], Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        for item in doc.get("write_files", []):
            if item["path"] in wanted:
                target = out / "recovery" / wanted[item["path"]]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(recording.redact_text(item["content"]))


def write_paging(recording: Recording, out: Path) -> None:
    """build/<stack>/alerting/paging.md and .json, from the files written above (tools/paging.py). Without
    the upstream amtool (`make upstream`) paging.md says why instead and main() warns (docs/alerting.md)."""
    from tools import paging

    try:
        paging.write(out, recording.stack)
    except paging.PagingUnavailable as exc:
        target = out / "alerting"
        target.mkdir(parents=True, exist_ok=True)
        (target / "paging.md").write_text(f"# Who gets paged for what: stack {recording.stack}\n\n"
                                          f"{PAGING_NOT_RENDERED}: {exc}\n")


PAGING_NOT_RENDERED = "Not rendered"

ARTIFACTS: list[Callable[[Recording, Path], None]] = [
    write_resources, write_user_data, write_helm_values, write_prometheus_config, write_grafana, write_recovery,
    write_runbook_hub, write_paging,
]


def render(recording: Recording, build_dir: Path) -> Path:
    out = build_dir / recording.stack
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for write in ARTIFACTS:
        write(recording, out)
    return out


def promtool_check_user_rules() -> tuple[list[str], list[str]]:
    """(errors, warnings): promtool of the Prometheus the chart deploys on every alerts/*.yaml (model/rules/user.py)."""
    from model.rules.user import USER_RULES_DIR
    from tools import upstream

    files = sorted(USER_RULES_DIR.glob("*.y*ml")) if USER_RULES_DIR.is_dir() else []
    if not files:
        return [], []
    try:
        promtool = upstream.built_binary("promtool")
    except upstream.UpstreamError as exc:
        return [], [f"{USER_RULES_DIR.name}/ not checked by promtool: {exc}"]
    done = subprocess.run([str(promtool), "check", "rules", *map(str, files)], capture_output=True, text=True, timeout=120)
    if done.returncode == 0:
        return [], []
    return [line.strip() for line in (done.stdout + done.stderr).splitlines()
            if line.strip() and not line.startswith(("Checking ", "FAILED")) and "SUCCESS" not in line], []


def version() -> str:
    """The project's version: VERSION, the one place it is written (CHANGELOG.md names it too)."""
    return (ROOT / "VERSION").read_text().strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"homelab-observability {version()}")
    parser.add_argument("--stack", default="homelab", help="stack name; reads Pulumi.<stack>.yaml")
    parser.add_argument("--stack-file", type=Path, help="any Pulumi.<stack>.yaml (overrides --stack)")
    parser.add_argument("--out", type=Path, default=ROOT / "build", help="build directory (default: build/)")
    parser.add_argument("--quiet", action="store_true", help="no resource table")
    parser.add_argument("--require-paging", action="store_true",
                        help="fail unless alerting/paging.md is rendered (it needs the upstream amtool: make upstream)")
    args = parser.parse_args(argv)
    stack_file = args.stack_file or ROOT / f"Pulumi.{args.stack}.yaml"
    if not stack_file.is_file():
        print(f"error: no stack file {stack_file}", file=sys.stderr)
        return 2

    import pulumi

    started = time.perf_counter()
    problems, warnings = promtool_check_user_rules()
    if problems:
        print("error: promtool refuses alerts/:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    try:
        check_schema_files()
        recording = run_program(stack_file)
    except pulumi.RunError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except (StackFileError, ProviderCheckError, SchemaDataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for warning in recording.warnings():
        print(f"warning: {warning}", file=sys.stderr)
    for info in recording.logged_info:
        print(f"info: {info}", file=sys.stderr)
    out = render(recording, args.out)
    paging_md = out / "alerting" / "paging.md"
    if paging_md.is_file() and not (out / "alerting" / "paging.json").is_file():
        reason = paging_md.read_text().split(f"{PAGING_NOT_RENDERED}: ", 1)[-1].strip()
        print(f"{'error' if args.require_paging else 'warning'}: who gets paged for what "
              f"(alerting/paging.md) not rendered: {reason}", file=sys.stderr)
        if args.require_paging:
            return 2
    if not args.quiet:
        print_table(recording)
    print(f"Rendered artifacts of homelab-observability {version()} to {out} in {time.perf_counter() - started:.2f} s.")
    return 0


if __name__ == "__main__":
    try:
        status = main()
        sys.stdout.flush()
    except BrokenPipeError:  # `make preview | head`: the reader has what it wanted
        status = 0
    sys.stderr.flush()
    # Every file is written and closed; skip the interpreter's teardown of the Pulumi runtime
    # (gRPC threads, tens of thousands of SDK objects), which costs about half a second.
    os._exit(status)
