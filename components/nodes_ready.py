"""NodesReady: a step of `pulumi up` that ends when the observability k3s nodes are Ready.

On an empty homelab the VMs are created, then boot, run cloud-init, install k3s and join the
cluster: minutes in which a Helm release would find no node its pods may run on, and Helm's wait
would time out. Every release depends on this resource, whose creation polls the Kubernetes API
(components/cluster_nodes.py) until each role's nodes are Ready.

A Pulumi dynamic resource: the engine runs the provider below in its Python dynamic-provider
process, which imports this module from the project directory. It waits again only when what it
waits for changes (the groups, the VMs, the cluster); later `pulumi up`s pass straight through.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi import dynamic

from model.hosts import NodeGroup

# Inputs whose change means other nodes to wait for; a new timeout alone does not.
WAIT_INPUTS = ("groups", "vmIds", "context", "kubeconfig")


def _groups(props: dict[str, Any]) -> list[NodeGroup]:
    return [NodeGroup(dict(g["labels"]), dict(g["hosts"])) for g in props["groups"]]


def _wait(props: dict[str, Any]) -> dict[str, Any]:
    from components.cluster_nodes import kubernetes_lister, wait_for_nodes

    lister = kubernetes_lister(props.get("kubeconfig"), props.get("context"))
    ready = wait_for_nodes(lister, _groups(props), float(props["timeoutSeconds"]), float(props["pollSeconds"]))
    return {**props, "readyNodes": ready}


class NodesReadyProvider(dynamic.ResourceProvider):
    """Creation is the wait; there is nothing to delete."""

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        return dynamic.CreateResult("k3s-nodes-ready", _wait(props))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        changed = [k for k in WAIT_INPUTS if olds.get(k) != news.get(k)]
        retimed = any(olds.get(k) != news.get(k) for k in ("timeoutSeconds", "pollSeconds"))
        return dynamic.DiffResult(changes=bool(changed) or retimed, replaces=[], delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        if any(olds.get(k) != news.get(k) for k in WAIT_INPUTS):
            return dynamic.UpdateResult(_wait(news))
        return dynamic.UpdateResult({**news, "readyNodes": olds.get("readyNodes")})


@dataclass(frozen=True)
class NodesReadyArgs:
    groups: list[NodeGroup]
    vm_ids: list[pulumi.Input[str]]  # a re-created VM means its node must join again
    timeout_seconds: int
    poll_seconds: int = 10
    context: str | None = None
    kubeconfig: pulumi.Input[str] | None = None  # a path, or the file's contents (a secret)


class NodesReady(dynamic.Resource, module="homelab", name="NodesReady"):
    ready_nodes: pulumi.Output[dict[str, list[str]]]

    def __init__(self, name: str, args: NodesReadyArgs, opts: pulumi.ResourceOptions | None = None):
        props = {
            "groups": [{"labels": g.labels, "hosts": g.hosts} for g in args.groups],
            "vmIds": args.vm_ids,
            "timeoutSeconds": args.timeout_seconds,
            "pollSeconds": args.poll_seconds,
            "context": args.context,
            "kubeconfig": pulumi.Output.secret(args.kubeconfig) if args.kubeconfig is not None else None,
            "readyNodes": None,
        }
        super().__init__(NodesReadyProvider(), name, props, opts)
