"""Helm releases of pinned charts in a component's namespace: the skeleton every workload shares.

A component (metrics, logs, traces, grafana) creates one namespace, maybe the Secret its pods
read object-storage credentials from, and its releases. Child resources are named after the
component (`logs-namespace`, `logs-loki`), so two instances never collide; a child that had
another name before carries it as an alias, so existing stacks adopt it instead of replacing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import pulumi
from pulumi_kubernetes.helm.v3 import Release

from components.kubernetes_objects import Namespace, NetworkPolicy, Secret
from model.values.helm import HelmChart


def child_name(component: str, part: str) -> str:
    """The resource name of a component's child: the component's name, then what the child is."""
    return part if part == component else f"{component}-{part}"


def child_options(parent: pulumi.Resource, name: str, formerly: str | None = None, **options) -> pulumi.ResourceOptions:
    """`parent=` the component; `formerly` is the child's name before it was derived from the component's."""
    aliases = [pulumi.Alias(name=formerly)] if formerly and formerly != name else None
    return pulumi.ResourceOptions(parent=parent, aliases=aliases, **options)


@dataclass(frozen=True)
class Cluster:
    """The k3s cluster as every release sees it: what it waits for, and how long Helm waits."""

    nodes_ready: pulumi.Resource | None = None  # NodesReady: the observability nodes joined and Ready
    release_timeout: int | None = None  # seconds; None: Helm's 300


class ReleaseNamespace:
    """A component's namespace and the Helm releases and Secrets in it.

    The namespace is protected: deleting it would delete every volume claim in it. `labels`: its
    Pod Security Admission level (model/pod_security.py); `policies`: the NetworkPolicies that
    wall it (model/network_policies.py), in place before any release starts a pod. Everything
    created in it waits for it; its releases also wait for `requires` (the nodes they run on
    being Ready, the release that installs the CRDs of the ServiceMonitors a chart creates).
    """

    def __init__(self, parent: pulumi.Resource, component: str, namespace: str, cluster: Cluster,
                 requires: Sequence[pulumi.Resource | None] = (), retain_on_delete: bool = False,
                 formerly: str | None = None, labels: Mapping[str, str] | None = None,
                 policies: Sequence[Mapping] = ()):
        self.component, self.parent, self.name = component, parent, namespace
        self.release_timeout = cluster.release_timeout
        resource = child_name(component, "namespace")
        metadata = {"name": namespace, **({"labels": dict(labels)} if labels else {})}
        self.namespace = Namespace(resource, metadata=metadata,
                                   opts=child_options(parent, resource, formerly, protect=True,
                                                      retain_on_delete=retain_on_delete))
        walls = [self._network_policy(manifest) for manifest in policies]
        self.ready: list[pulumi.Resource] = [self.namespace, *walls,
                                             *(r for r in [cluster.nodes_ready, *requires] if r)]

    def _network_policy(self, manifest: Mapping) -> NetworkPolicy:
        resource = child_name(self.component, manifest["metadata"]["name"])
        return NetworkPolicy(resource, metadata={**manifest["metadata"], "namespace": self.namespace.metadata["name"]},
                             spec=manifest["spec"], opts=child_options(self.parent, resource, depends_on=[self.namespace]))

    def secret(self, name: str, string_data: Mapping[str, pulumi.Input[str]], type: str | None = None) -> Secret:
        """A Secret `name` in the namespace; every value stays a Pulumi secret."""
        resource = child_name(self.component, name)
        return Secret(
            resource,
            metadata={"name": name, "namespace": self.namespace.metadata["name"]},
            type=type,
            string_data={key: pulumi.Output.secret(value) for key, value in string_data.items()},
            opts=child_options(self.parent, resource, name, depends_on=[self.namespace]),
        )

    def credentials(self, name: str, env_to_secret: Mapping[str, str],
                    secrets: Mapping[str, pulumi.Output[str]]) -> Secret:
        """The Secret whose keys are the environment variables a chart's pods read credentials from."""
        return self.secret(name, {env: secrets[key] for env, key in env_to_secret.items()}, type="Opaque")

    def release(self, release: str, chart: HelmChart, values: dict, protect: bool = False,
                needs: Sequence[pulumi.Resource] = ()) -> Release:
        resource = child_name(self.component, release)
        return Release(
            resource,
            # A fixed release name keeps Service and PVC names stable (no random suffix).
            name=release,
            chart=chart.name,
            version=chart.version,
            repository_opts={"repo": chart.repository},
            namespace=self.namespace.metadata["name"],
            values=values,
            atomic=False,  # a failed upgrade must not roll back (and restart) a stateful release
            max_history=10,
            timeout=self.release_timeout,
            opts=child_options(self.parent, resource, release, protect=protect, depends_on=[*self.ready, *needs]),
        )
