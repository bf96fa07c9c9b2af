"""The policy pack's contents: every policy, from the values checks and the rendered-manifest checks."""

from __future__ import annotations

from typing import Any

from pulumi_policy import PolicyConfigSchema, ResourceValidationPolicy, StackValidationPolicy

from policy.manifests import rendered_manifests_policy
from policy.policies import (
    DEFAULT_ALLOWED_REPOSITORIES,
    DEFAULT_REQUIRED_TAGS,
    DEFAULT_SEVERITIES,
    alert_routes_resolve,
    alert_rules_complete,
    data_protected,
    helm_chart_pinned,
    image_tags_pinned,
    loki_retention,
    no_plaintext_secrets,
    vm_required_tags,
    workload_resources,
)


def _strings(description: str, default: list[str]) -> dict[str, Any]:
    return {"type": "array", "items": {"type": "string"}, "description": description, "default": default}


def all_policies() -> list[ResourceValidationPolicy | StackValidationPolicy]:
    """Every policy of the pack; enforcement comes from the pack (mandatory) unless set here."""
    resource = ResourceValidationPolicy
    return [
        resource(name="helm-chart-pinned", validate=helm_chart_pinned,
                 description="Helm charts are pinned to an exact version from an allowed repository.",
                 config_schema=PolicyConfigSchema(properties={"allowedRepositories": _strings(
                     "Helm repository URLs (or oci:// prefixes) charts may come from.", DEFAULT_ALLOWED_REPOSITORIES)})),
        resource(name="image-tags-pinned", validate=image_tags_pinned,
                 description="No container image in Helm values runs 'latest' or an untagged image."),
        resource(name="no-plaintext-secrets", validate=no_plaintext_secrets,
                 description="No secret-looking value in Helm values, ConfigMaps or dashboard JSON.",
                 config_schema=PolicyConfigSchema(properties={"ignore": _strings(
                     "Reviewed false positives as '<resource name>:<path>'.", [])})),
        resource(name="data-protected", validate=data_protected,
                 description="Data-bearing VMs, volumes and Helm releases with persistent volumes are protected."),
        resource(name="alert-rules-complete", validate=alert_rules_complete,
                 description="Every alert has a severity, summary, description and a runbook_url whose runbook exists.",
                 config_schema=PolicyConfigSchema(properties={
                     "runbooksDir": {"type": "string", "default": "runbooks",
                                     "description": "Runbook directory, relative to the repository root."},
                     "severities": _strings("Allowed values of the severity label.", DEFAULT_SEVERITIES)})),
        StackValidationPolicy(name="alert-routes-resolve", validate=alert_routes_resolve,
                              description="Every Alertmanager route and Grafana notification policy points at a receiver that exists.",
                              config_schema=PolicyConfigSchema(properties={"externalContactPoints": _strings(
                                  "Grafana contact points managed outside this stack.", [])})),
        resource(name="loki-retention", validate=loki_retention,
                 description="Loki retention is enabled and at least 24h everywhere."),
        resource(name="workload-resources", validate=workload_resources,
                 description="Every workload of a Helm release has CPU/memory requests and a memory limit."),
        resource(name="vm-required-tags", validate=vm_required_tags,
                 description="Proxmox VMs carry the required tags.",
                 config_schema=PolicyConfigSchema(properties={"requiredTags": _strings(
                     "Tags every Proxmox VM must carry.", DEFAULT_REQUIRED_TAGS)})),
        rendered_manifests_policy(),
    ]

