"""The three core/v1 Kubernetes objects the stack creates besides its Helm releases.

pulumi_kubernetes.core.v1 builds every core/v1 type of the API on import: about 0.7 s, a third
of the offline preview's budget, for three kinds. These classes register exactly what the
SDK's Namespace, Secret and PersistentVolumeClaim register (type token, camelCase inputs,
provider version, secret outputs); tests/test_kubernetes_objects.py proves it against the SDK
classes on the mock engine.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any, Mapping

import pulumi

# The kubernetes provider plugin the SDK's own classes ask for: the installed SDK's version.
_PROVIDER_VERSION = version("pulumi-kubernetes")


class _CoreV1Object(pulumi.CustomResource):
    kind: str = ""
    metadata: pulumi.Output[Mapping[str, Any]]

    def __init__(self, resource_name: str, properties: dict[str, Any], opts: pulumi.ResourceOptions | None,
                 secret_outputs: list[str] | None = None):
        defaults = pulumi.ResourceOptions(version=_PROVIDER_VERSION)
        if secret_outputs:
            defaults = pulumi.ResourceOptions.merge(defaults, pulumi.ResourceOptions(additional_secret_outputs=secret_outputs))
        props = {"apiVersion": "v1", "kind": self.kind, **{k: v for k, v in properties.items() if v is not None}}
        super().__init__(f"kubernetes:core/v1:{self.kind}", resource_name, props,
                         pulumi.ResourceOptions.merge(defaults, opts))


class Namespace(_CoreV1Object):
    kind = "Namespace"

    def __init__(self, resource_name: str, metadata: Mapping[str, Any], opts: pulumi.ResourceOptions | None = None):
        super().__init__(resource_name, {"metadata": metadata}, opts)


class Secret(_CoreV1Object):
    kind = "Secret"

    def __init__(self, resource_name: str, metadata: Mapping[str, Any],
                 string_data: Mapping[str, pulumi.Input[str]], type: str | None = None,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__(resource_name, {"metadata": metadata, "stringData": pulumi.Output.secret(string_data),
                                         "type": type}, opts, secret_outputs=["data", "stringData"])


class PersistentVolumeClaim(_CoreV1Object):
    kind = "PersistentVolumeClaim"

    def __init__(self, resource_name: str, metadata: Mapping[str, Any], spec: Mapping[str, Any],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__(resource_name, {"metadata": metadata, "spec": spec}, opts)
