"""The lean Kubernetes classes register exactly what pulumi_kubernetes' own classes register."""

from __future__ import annotations

import pulumi
import pytest
from pulumi.runtime import mocks, settings
from pulumi.runtime.stack import Stack

import components.kubernetes_objects as lean


class _Engine(mocks.Mocks):
    def new_resource(self, args):
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args):
        return {}


class _Recorder(mocks.MockMonitor):
    def __init__(self):
        super().__init__(_Engine())
        self.requests = {}

    def RegisterResource(self, request):
        if request.type != "pulumi:pulumi:Stack":
            self.requests[request.name] = request
        return super().RegisterResource(request)


def _register(build) -> dict:
    """Register resources on a fresh mock engine; return each RegisterResourceRequest by name."""
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    monitor = _Recorder()
    mocks.set_mocks(_Engine(), project="p", stack="s", preview=True, monitor=monitor)
    settings.set_root_resource(None)
    Stack()
    _sync_await(run_pulumi_func(build))
    return monitor.requests


def _same(a, b):
    from pulumi.runtime import rpc

    assert a.type == b.type
    assert rpc.deserialize_properties(a.object) == rpc.deserialize_properties(b.object)
    assert sorted(a.additionalSecretOutputs) == sorted(b.additionalSecretOutputs)
    assert a.version == b.version and a.version
    assert (a.protect, list(a.dependencies)) == (b.protect, list(b.dependencies))
    assert sorted(map(str, a.aliases)) == sorted(map(str, b.aliases)) and list(a.aliasURNs) == list(b.aliasURNs)


CASES = {
    "Namespace": lambda m: m.Namespace("ns", metadata={"name": "monitoring"}),
    "Secret": lambda m: m.Secret("sec", metadata={"name": "receivers", "namespace": "monitoring"},
                                 string_data={"key": pulumi.Output.secret("s3cr3t")}, type="Opaque"),
    "PersistentVolumeClaim": lambda m: m.PersistentVolumeClaim(
        "pvc", metadata={"name": "data", "namespace": "grafana"},
        spec={"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}},
        opts=pulumi.ResourceOptions(protect=True)),
    "ConfigMap": lambda m: m.ConfigMap("cm", metadata={"name": "pbs-report", "namespace": "monitoring"},
                                       data={"settings.json": "{}"}),
    "CronJob": lambda m: m.CronJob("cj", metadata={"name": "pbs-report", "namespace": "monitoring"}, spec={
        "schedule": "0 6 1 1,4,7,10 *", "timeZone": "Europe/Berlin", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "report", "image": "python:3.11-slim-bookworm"}]}}}}}),
    "Service": lambda m: m.Service("svc", metadata={"name": "runbook-hub", "namespace": "monitoring"},
                                   spec={"selector": {"app": "hub"}, "ports": [{"port": 80, "targetPort": "http"}]}),
    "Deployment": lambda m: m.Deployment("dep", metadata={"name": "runbook-hub", "namespace": "monitoring"}, spec={
        "selector": {"matchLabels": {"app": "hub"}}, "template": {"metadata": {"labels": {"app": "hub"}}, "spec": {
            "containers": [{"name": "nginx", "image": "nginxinc/nginx-unprivileged:1.27.5-alpine"}]}}}),
    "Ingress": lambda m: m.Ingress("ing", metadata={"name": "runbook-hub", "namespace": "monitoring"}, spec={
        "rules": [{"host": "runbooks.home.arpa", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
            "service": {"name": "runbook-hub", "port": {"number": 80}}}}]}}]}),
    "NetworkPolicy": lambda m: m.NetworkPolicy("np", metadata={"name": "default-deny-ingress", "namespace": "logging"},
                                               spec={"podSelector": {}, "policyTypes": ["Ingress"]}),
}
SDK_MODULE = {"CronJob": "pulumi_kubernetes.batch.v1", "Deployment": "pulumi_kubernetes.apps.v1",
              "Ingress": "pulumi_kubernetes.networking.v1", "NetworkPolicy": "pulumi_kubernetes.networking.v1"}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_registers_like_the_sdk_class(kind):
    import importlib

    sdk = importlib.import_module(SDK_MODULE.get(kind, "pulumi_kubernetes.core.v1"))
    ours = _register(lambda: CASES[kind](lean))
    theirs = _register(lambda: CASES[kind](sdk))
    (name,) = ours
    _same(ours[name], theirs[name])


def test_secret_string_data_is_secret_on_the_wire():
    from pulumi.runtime import rpc

    request = _register(lambda: CASES["Secret"](lean))["sec"]
    raw = rpc.deserialize_properties(request.object)
    assert raw["stringData"][rpc._special_sig_key] == rpc._special_secret_sig


def test_a_custom_object_registers_like_the_sdk_custom_resource():
    import pulumi_kubernetes.apiextensions as sdk

    manifest = {"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
                "metadata": {"name": "grafana-tls", "namespace": "grafana", "annotations": {"pulumi.com/waitFor": "condition=Ready"}},
                "spec": {"secretName": "grafana-tls", "dnsNames": ["grafana.home.arpa"],
                         "issuerRef": {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": "homelab-ca"}}}
    ours = _register(lambda: lean.CustomObject("cert", manifest))
    theirs = _register(lambda: sdk.CustomResource("cert", api_version=manifest["apiVersion"], kind=manifest["kind"],
                                                  metadata=manifest["metadata"], spec=manifest["spec"]))
    _same(ours["cert"], theirs["cert"])
    assert ours["cert"].type == "kubernetes:cert-manager.io/v1:Certificate"
