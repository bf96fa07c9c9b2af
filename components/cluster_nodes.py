"""The k3s nodes as the Kubernetes API reports them, and waiting until a role's nodes are Ready.

No Pulumi here: the NodesReady dynamic resource (components/nodes_ready.py) runs this inside
Pulumi's dynamic-provider process during `pulumi up`; the tests run it against a fake API
server. The kubeconfig is read by the official Kubernetes client, as kubectl and the Kubernetes
provider read it (a file or its contents, the context, certificates, tokens, exec plugins).

Errors come in two kinds: the API refused us (credentials, RBAC, TLS, a kubeconfig without that
context) and waiting cannot help, so it fails at once; or there was no answer yet (the server
restarting, a timeout), and polling goes on until the deadline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from model.hosts import NodeGroup


@dataclass(frozen=True)
class NodeState:
    name: str
    ready: bool
    reason: str  # of the node's Ready condition (KubeletReady, KubeletNotReady, ...); "" if none yet


class ClusterRefused(Exception):
    """The API server answered, and no amount of waiting changes its answer."""


class ClusterUnreachable(Exception):
    """No usable answer this time; worth asking again."""


class NodesNotReady(Exception):
    """The deadline passed before every group had its nodes Ready."""


NodeLister = Callable[[str], Sequence[NodeState]]  # label selector -> the nodes it selects


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def _group_line(group: NodeGroup, nodes: Sequence[NodeState] | None) -> str:
    if nodes is None:
        return f"  - {group.selector}: unknown (no answer from the API)"
    by_name = {n.name: n for n in nodes}
    ready = sum(n.ready for n in nodes)
    details = []
    for host, address in sorted(group.hosts.items()):
        node = by_name.get(host)
        if node is None:
            details.append(f"{host} ({address}): not registered")
        elif not node.ready:
            details.append(f"{host} ({address}): NotReady{', ' + node.reason if node.reason else ''}")
    return f"  - {group.selector}: {ready} of {len(group.hosts)} Ready" + (f" ({'; '.join(details)})" if details else "")


def wait_for_nodes(list_nodes: NodeLister, groups: Sequence[NodeGroup], timeout_seconds: float,
                   poll_seconds: float = 10, clock: Callable[[], float] = time.monotonic,
                   sleep: Callable[[float], None] = time.sleep) -> dict[str, list[str]]:
    """Poll until each group has as many Ready nodes as it has hosts; selector -> Ready node names.

    Raises ClusterRefused at once, NodesNotReady (naming each missing or NotReady host) once
    `timeout_seconds` have passed.
    """
    deadline = clock() + timeout_seconds
    while True:
        seen: dict[str, Sequence[NodeState]] = {}
        last_error: ClusterUnreachable | None = None
        try:
            for group in groups:
                seen[group.selector] = list_nodes(group.selector)
        except ClusterUnreachable as exc:
            last_error = exc
        if last_error is None and all(sum(n.ready for n in seen[g.selector]) >= len(g.hosts) for g in groups):
            return {g.selector: sorted(n.name for n in seen[g.selector] if n.ready) for g in groups}
        remaining = deadline - clock()
        if remaining <= 0:
            lines = [f"after {_minutes(timeout_seconds)}, the k3s nodes the Helm releases need are not Ready:"]
            lines += [_group_line(g, seen.get(g.selector)) for g in groups]
            if last_error is not None:
                lines.append(f"  last error: {last_error}")
            lines.append("A first boot installs k3s from cloud-init: see `cloud-init status --long` and "
                         "`journalctl -u k3s-agent` on the VM; for a slow first boot raise "
                         "k3s.nodeReadyTimeoutSeconds, then run `pulumi up` again.")
            raise NodesNotReady("\n".join(lines))
        sleep(min(poll_seconds, remaining))


def _ready(node: Any) -> NodeState:
    conditions = (node.status.conditions if node.status else None) or []
    ready = next((c for c in conditions if c.type == "Ready"), None)
    return NodeState(node.metadata.name, bool(ready and ready.status == "True"), (ready.reason or "") if ready else "")


def kubernetes_lister(kubeconfig: str | None, context: str | None, request_timeout: float = 10) -> NodeLister:
    """List nodes through the API server of `context` in `kubeconfig`.

    `kubeconfig` as the Kubernetes provider's `kubernetes:kubeconfig` takes it: a path or the
    file's contents; unset, KUBECONFIG or ~/.kube/config. `context` unset: the current context.
    """
    import urllib3
    import yaml
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.config_exception import ConfigException

    source = "the kubeconfig contents" if kubeconfig and "\n" in kubeconfig else (kubeconfig or "KUBECONFIG or ~/.kube/config")
    configuration = client.Configuration()
    try:
        if kubeconfig and "\n" in kubeconfig:
            config.load_kube_config_from_dict(yaml.safe_load(kubeconfig), context=context,
                                              client_configuration=configuration, persist_config=False)
        else:
            config.load_kube_config(config_file=kubeconfig, context=context,
                                    client_configuration=configuration, persist_config=False)
    except (ConfigException, OSError, yaml.YAMLError, TypeError, KeyError) as exc:
        raise ClusterRefused(f"cannot use context {context or '(current)'} of {source}: {exc}") from None
    configuration.retries = 0  # the caller polls; a retry inside one poll only delays its answer
    server = configuration.host
    api = client.CoreV1Api(client.ApiClient(configuration))

    def list_nodes(selector: str) -> list[NodeState]:
        try:
            nodes = api.list_node(label_selector=selector, _request_timeout=request_timeout)
        except ApiException as exc:
            if exc.status == 401:
                raise ClusterRefused(f"{server} refused the credentials of context {context or '(current)'} "
                                     f"(401 Unauthorized): the kubeconfig's token or client certificate is "
                                     f"not (or no longer) valid for this cluster") from None
            if exc.status == 403:
                raise ClusterRefused(f"{server}: context {context or '(current)'} may not list nodes "
                                     f"(403 Forbidden): it needs get/list on nodes (cluster-wide)") from None
            raise ClusterUnreachable(f"{server} answered {exc.status} {exc.reason}") from None
        except urllib3.exceptions.MaxRetryError as exc:
            if isinstance(exc.reason, urllib3.exceptions.SSLError):
                raise ClusterRefused(f"{server}: TLS verification failed ({exc.reason}): the kubeconfig's "
                                     f"certificate-authority must be the CA that signed the API server's "
                                     f"certificate") from None
            raise ClusterUnreachable(f"{server}: {exc.reason}") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ClusterUnreachable(f"{server}: {exc}") from None
        return [_ready(n) for n in nodes.items]

    return list_nodes
