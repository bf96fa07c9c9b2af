"""The plain Kubernetes objects the stack creates besides its Helm releases, and custom objects.

pulumi_kubernetes.core.v1 builds every core/v1 type of the API on import: about 0.7 s, a third
of the offline preview's budget, for three kinds. These classes register exactly what the
SDK's Namespace, Secret and PersistentVolumeClaim register (type token, camelCase inputs,
provider version, secret outputs, aliases); tests/program/test_kubernetes_objects.py proves it against
the SDK classes on the mock engine. The report's CronJob is the same story for batch/v1, and
CustomObject (cert-manager's Certificate) for apiextensions.CustomResource, the runbook hub's
Deployment, Service and Ingress for apps/v1, core/v1 and networking.k8s.io/v1, the walls between
workloads (NetworkPolicy) for networking.k8s.io/v1.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any, Mapping

import pulumi

# The kubernetes provider plugin the SDK's own classes ask for: the installed SDK's version.
_PROVIDER_VERSION = version("pulumi-kubernetes")


class _KubernetesObject(pulumi.CustomResource):
    kind: str = ""
    api_version = "v1"
    type_prefix = "kubernetes:core/v1"
    aliases: tuple[str, ...] = ()
    metadata: pulumi.Output[Mapping[str, Any]]

    def __init__(self, resource_name: str, properties: dict[str, Any], opts: pulumi.ResourceOptions | None,
                 secret_outputs: list[str] | None = None):
        defaults = pulumi.ResourceOptions(version=_PROVIDER_VERSION)
        if secret_outputs:
            defaults = pulumi.ResourceOptions.merge(defaults, pulumi.ResourceOptions(additional_secret_outputs=secret_outputs))
        opts = pulumi.ResourceOptions.merge(defaults, opts)
        if self.aliases:
            opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(
                aliases=[pulumi.Alias(type_=alias) for alias in self.aliases]))
        props = {"apiVersion": self.api_version, "kind": self.kind,
                 **{k: v for k, v in properties.items() if v is not None}}
        super().__init__(f"{self.type_prefix}:{self.kind}", resource_name, props, opts)


class Namespace(_KubernetesObject):
    kind = "Namespace"

    def __init__(self, resource_name: str, metadata: Mapping[str, Any], opts: pulumi.ResourceOptions | None = None):
        super().__init__(resource_name, {"metadata": metadata}, opts)


class Secret(_KubernetesObject):
    kind = "Secret"

    def __init__(self, resource_name: str, metadata: Mapping[str, Any],
                 string_data: Mapping[str, pulumi.Input[str]], type: str | None = None,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__(resource_name, {"metadata": metadata, "stringData": pulumi.Output.secret(string_data),
                                         "type": type}, opts, secret_outputs=["data", "stringData"])


class _WithSpec(_KubernetesObject):
    """A kind made of metadata and spec."""

    def __init__(self, resource_name: str, metadata: Mapping[str, Any], spec: Mapping[str, Any],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__(resource_name, {"metadata": metadata, "spec": spec}, opts)


class PersistentVolumeClaim(_WithSpec):
    kind = "PersistentVolumeClaim"


class ConfigMap(_KubernetesObject):
    kind = "ConfigMap"

    def __init__(self, resource_name: str, metadata: Mapping[str, Any], data: Mapping[str, pulumi.Input[str]],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__(resource_name, {"metadata": metadata, "data": data}, opts)


class CronJob(_WithSpec):
    kind = "CronJob"
    api_version = "batch/v1"
    type_prefix = "kubernetes:batch/v1"
    aliases = ("kubernetes:batch/v1beta1:CronJob", "kubernetes:batch/v2alpha1:CronJob")


class Service(_WithSpec):
    kind = "Service"


class Deployment(_WithSpec):
    kind = "Deployment"
    api_version = "apps/v1"
    type_prefix = "kubernetes:apps/v1"
    aliases = ("kubernetes:apps/v1beta1:Deployment", "kubernetes:apps/v1beta2:Deployment",
               "kubernetes:extensions/v1beta1:Deployment")


class Ingress(_WithSpec):
    kind = "Ingress"
    api_version = "networking.k8s.io/v1"
    type_prefix = "kubernetes:networking.k8s.io/v1"
    aliases = ("kubernetes:extensions/v1beta1:Ingress", "kubernetes:networking.k8s.io/v1beta1:Ingress")


class NetworkPolicy(_WithSpec):
    kind = "NetworkPolicy"
    api_version = "networking.k8s.io/v1"
    type_prefix = "kubernetes:networking.k8s.io/v1"
    aliases = ("kubernetes:extensions/v1beta1:NetworkPolicy",)


class CustomObject(pulumi.CustomResource):
    """An object of a custom resource kind (e.g. cert-manager's Certificate), from its plain manifest."""

    def __init__(self, resource_name: str, manifest: Mapping[str, Any], opts: pulumi.ResourceOptions | None = None):
        props = {"apiVersion": manifest["apiVersion"], "kind": manifest["kind"],
                 **{k: v for k, v in manifest.items() if k not in ("apiVersion", "kind")}}
        super().__init__(f"kubernetes:{manifest['apiVersion']}:{manifest['kind']}", resource_name, props,
                         pulumi.ResourceOptions.merge(pulumi.ResourceOptions(version=_PROVIDER_VERSION), opts))
