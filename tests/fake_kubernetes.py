"""A fake Kubernetes API server on 127.0.0.1: the node list, as a k3s server answers it.

Only what the node readiness check asks (components/cluster_nodes.py), in the API's shapes:

* HTTPS only, with a certificate for 127.0.0.1 signed by the test CA (`Certificates`, made
  with openssl like a k3s server's own CA).
* Authentication as kube-apiserver does it: a bearer token, or a client certificate signed by
  the cluster CA (what k3s writes into its kubeconfig). Neither: 401 with a `Status` object;
  a known identity without the right to list nodes: 403 (`Status`, reason Forbidden).
* `GET /api/v1/nodes?labelSelector=k=v,...`: a `NodeList` of the nodes whose labels match every
  equality requirement, each with its `Ready` condition as the kubelet reports it
  (`KubeletReady` / `KubeletNotReady`). Any other path: 404 `Status`.

A node is scripted by the number of node lists it takes to change: it is absent from the first
`registered_after` lists (the VM has not joined yet) and NotReady until `ready_after` lists
have been answered.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

TIME = "2026-01-01T00:00:00Z"


@dataclass
class Certificates:
    """A cluster CA, the API server's certificate for 127.0.0.1 and an admin client certificate."""

    directory: Path

    def __post_init__(self):
        d = self.directory

        def run(*args):
            subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

        run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
            "-subj", "/CN=k3s-server-ca", "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"))
        for name, subject, extensions in (
                ("server", "/CN=k3s", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
                ("admin", "/O=system:masters/CN=system:admin", "extendedKeyUsage=clientAuth")):
            run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", subject,
                "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"))
            (d / f"{name}.ext").write_text(extensions + "\n")
            run("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.crt"), "-CAkey", str(d / "ca.key"),
                "-CAcreateserial", "-days", "2", "-extfile", str(d / f"{name}.ext"), "-out", str(d / f"{name}.crt"))

    def pem(self, name: str) -> str:
        return (self.directory / name).read_text()


@dataclass
class FakeNode:
    name: str
    labels: dict[str, str]
    registered_after: int = 0
    ready_after: int = 0


@dataclass
class FakeKubernetes:
    certificates: Certificates
    tokens: dict[str, str] = field(default_factory=lambda: {"admin-token": "system:admin"})
    # Identities (token users or certificate CNs) allowed to list nodes.
    may_list_nodes: set[str] = field(default_factory=lambda: {"system:admin"})
    nodes: list[FakeNode] = field(default_factory=list)
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # (path, labelSelector, identity)
    lists_answered: int = 0

    def add_node(self, name: str, labels: dict[str, str], registered_after: int = 0, ready_after: int = 0) -> None:
        self.nodes.append(FakeNode(name, labels, registered_after, ready_after))

    def _node(self, node: FakeNode) -> dict:
        ready = self.lists_answered >= node.ready_after
        return {
            "metadata": {"name": node.name, "uid": f"uid-{node.name}", "resourceVersion": "1",
                         "creationTimestamp": TIME, "labels": {"kubernetes.io/hostname": node.name, **node.labels}},
            "spec": {"podCIDR": "10.42.1.0/24"},
            "status": {"conditions": [{
                "type": "Ready", "status": "True" if ready else "False",
                "reason": "KubeletReady" if ready else "KubeletNotReady",
                "message": "kubelet is posting ready status" if ready else
                           "container runtime network not ready: NetworkReady=false",
                "lastHeartbeatTime": TIME, "lastTransitionTime": TIME}]},
        }

    def answer(self, path: str, query: str, identity: str | None) -> tuple[int, dict]:
        selector = (parse_qs(query).get("labelSelector") or [""])[0]
        self.requests.append((path, selector, identity or ""))
        if identity is None:
            return 401, _status(401, "Unauthorized", "Unauthorized")
        if path != "/api/v1/nodes":
            return 404, _status(404, "NotFound", "the server could not find the requested resource")
        if identity not in self.may_list_nodes:
            return 403, _status(403, "Forbidden", f'nodes is forbidden: User "{identity}" cannot list resource '
                                                  f'"nodes" in API group "" at the cluster scope')
        wanted = dict(part.split("=", 1) for part in selector.split(",") if part)
        items = [self._node(n) for n in self.nodes if self.lists_answered >= n.registered_after
                 and all(n.labels.get(k) == v for k, v in wanted.items())]
        self.lists_answered += 1
        return 200, {"kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items}

    def start(self) -> int:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                url = urlsplit(self.path)
                status, doc = fake.answer(url.path, url.query, self._identity())
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _identity(self) -> str | None:
                auth = self.headers.get("Authorization") or ""
                if auth.startswith("Bearer "):
                    return fake.tokens.get(auth[len("Bearer "):])
                cert = self.connection.getpeercert()  # verified against the cluster CA, or None
                if cert:
                    return dict(x[0] for x in cert["subject"]).get("commonName")
                return None

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                if not isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError)):
                    super().handle_error(request, client_address)

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.certificates.directory / "server.crt", self.certificates.directory / "server.key")
        context.load_verify_locations(self.certificates.directory / "ca.crt")
        context.verify_mode = ssl.CERT_OPTIONAL  # a client certificate, or a token
        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self.port

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


def _status(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}
