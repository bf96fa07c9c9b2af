"""A Helm release of a pinned chart, and the Secret its pods read credentials from."""

from __future__ import annotations

import pulumi
from components.kubernetes_objects import Namespace, Secret
from pulumi_kubernetes.helm.v3 import Release

from model.helm import HelmChart


def chart_release(name: str, chart: HelmChart, namespace: pulumi.Input[str], values: dict,
                  parent: pulumi.Resource, protect: bool = False,
                  depends_on: list[pulumi.Resource] | None = None) -> Release:
    return Release(
        name,
        # A fixed release name keeps Service and PVC names stable (no random suffix).
        name=name,
        chart=chart.name,
        version=chart.version,
        repository_opts={"repo": chart.repository},
        namespace=namespace,
        values=values,
        atomic=False,  # a failed upgrade must not roll back (and restart) a stateful release
        max_history=10,
        opts=pulumi.ResourceOptions(parent=parent, protect=protect, depends_on=depends_on or []),
    )


def credentials_secret(name: str, namespace: Namespace, env_to_secret: dict[str, str],
                       secrets: dict[str, pulumi.Output[str]], parent: pulumi.Resource) -> Secret:
    """A Secret whose keys are the environment variables a chart's pods read their credentials from."""
    return Secret(
        name,
        metadata={"name": name, "namespace": namespace.metadata["name"]},
        type="Opaque",
        string_data={env: pulumi.Output.secret(secrets[key]) for env, key in env_to_secret.items()},
        opts=pulumi.ResourceOptions(parent=parent),
    )
