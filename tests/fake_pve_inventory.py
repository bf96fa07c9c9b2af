"""A fake Proxmox VE cluster for prometheus-pve-exporter: one HTTPS API per node on 127.0.0.1.

What the exporter 3.10 reads (pve_exporter/collector), answered as pve-manager does:

* ``/cluster/status`` (PVE/API2/Cluster.pm): the ``cluster`` entry first (id ``cluster``, name,
  nodes, version, quorate), then one ``node`` entry per member (id ``node/<name>``, name,
  nodeid, ``local`` 1 for the node answering, online, ip, level).
* ``/cluster/resources`` (``type`` vm|storage|node, API2Tools extract_*_stats): guests
  ``<qemu|lxc>/<vmid>`` with status, name, template, stats, ``hastate`` only for HA-managed
  ones, ``lock``/``tags`` when set; nodes ``node/<name>`` with status online|offline and
  ``hastate`` (the HA manager's node status); storages ``storage/<node>/<id>`` per node it is
  enabled on, status ``available`` only when pvestatd reported it, else ``unknown``.
* ``/version``; ``/cluster/backup-info/not-backed-up`` (Cluster/BackupInfo.pm: vmid, name,
  type of every guest no vzdump job includes); ``/cluster/config/qdevice`` (``{}`` without one).
* ``/nodes/<node>/subscription``, ``/nodes/<node>/qemu``, ``/lxc`` and ``.../<vmid>/config``,
  ``/nodes/<node>/replication`` and ``.../<id>/status`` (API2/Replication.pm: the job config
  plus last_sync, last_try, fail_count, error, duration, next_sync) of the answering node.

Auth is ``Authorization: PVEAPIToken=<user>@<realm>!<name>=<secret>``, else 401. A node that is
down does not answer at all (its server is stopped); every other path is 501 and recorded in
``unknown`` so a test can tell when the exporter asks for something this fake does not know.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tests.loopback import QuietServer, stop_http

TOKEN = "prometheus@pve!exporter=3f2a9c1e-7b4d-4e8f-a1c2-5d6e7f8a9b0c"
HA_TYPES = {"qemu": "vm", "lxc": "ct"}


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and its key): the CA the exporter is told to trust."""
    cert, key = directory / "pve.pem", directory / "pve.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=pve.test",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@dataclass
class Guest:
    vmid: int
    node: str
    name: str
    kind: str = "qemu"
    status: str = "running"
    hastate: str | None = None  # None: not managed by HA
    backed_up: bool = True  # some vzdump job includes it
    onboot: int = 1


@dataclass
class Storage:
    storage: str
    plugintype: str
    content: str
    nodes: tuple[str, ...]
    shared: int = 0
    unavailable_on: set[str] = field(default_factory=set)  # pvestatd has no status from these nodes


@dataclass
class Replication:
    guest: int
    source: str
    target: str
    jobnum: int = 0
    fail_count: int = 0
    last_sync: int = 1_785_000_000
    duration: float = 4.2

    @property
    def id(self) -> str:
        return f"{self.guest}-{self.jobnum}"


class FakePveCluster:
    def __init__(self, name: str = "homelab", nodes: tuple[str, ...] = ("pve1", "pve2")):
        self.lock = threading.RLock()
        self.name = name
        self.online = {n: True for n in nodes}
        self.guests: dict[int, Guest] = {}
        self.storages: list[Storage] = []
        self.replications: list[Replication] = []
        self.servers: dict[str, QuietServer] = {}
        self.requests: list[tuple[str, str]] = []  # (answering node, path)
        self.unknown: list[str] = []
        self.now = 1_785_000_900

    # --- state
    def quorate(self) -> int:
        return int(sum(self.online.values()) * 2 > len(self.online))

    def cluster_status(self, local: str) -> list[dict]:
        entries = [{"type": "cluster", "id": "cluster", "name": self.name, "nodes": len(self.online), "version": 4,
                    "quorate": self.quorate()}]
        for nodeid, (node, up) in enumerate(self.online.items(), start=1):
            entries.append({"type": "node", "id": f"node/{node}", "name": node, "nodeid": nodeid,
                            "local": int(node == local), "online": int(up), "ip": f"192.168.30.{10 + nodeid}", "level": ""})
        return entries

    def _guest_entry(self, g: Guest) -> dict:
        entry = {"id": f"{g.kind}/{g.vmid}", "vmid": g.vmid, "node": g.node, "type": g.kind, "status": g.status,
                 "name": g.name, "template": 0, "uptime": 86400 if g.status == "running" else 0, "maxcpu": 2, "cpu": 0.05,
                 "maxmem": 4 << 30, "mem": 1 << 30, "maxdisk": 32 << 30, "disk": 0, "netin": 1000, "netout": 2000,
                 "diskread": 3000, "diskwrite": 4000}
        if g.hastate:
            entry["hastate"] = g.hastate
        return entry

    def resources(self, kind: str | None) -> list[dict]:
        out: list[dict] = []
        if kind in (None, "vm"):
            out += [self._guest_entry(g) for _, g in sorted(self.guests.items())]
        if kind in (None, "node"):
            for node, up in self.online.items():
                entry = {"id": f"node/{node}", "node": node, "type": "node", "status": "online" if up else "offline",
                         "level": "", "maxcpu": 8, "maxmem": 64 << 30, "maxdisk": 100 << 30, "cgroup-mode": 2}
                if up:
                    entry.update(uptime=3600, cpu=0.1, mem=16 << 30, disk=10 << 30)
                if any(g.hastate for g in self.guests.values()):
                    entry["hastate"] = "online" if up else "unknown"
                out.append(entry)
        if kind in (None, "storage"):
            for s in self.storages:
                for node in s.nodes:
                    entry = {"id": f"storage/{node}/{s.storage}", "storage": s.storage, "node": node, "type": "storage",
                             "plugintype": s.plugintype, "status": "unknown", "shared": s.shared, "content": s.content}
                    if self.online[node] and node not in s.unavailable_on:
                        entry.update(status="available", maxdisk=1 << 40, disk=1 << 38)
                    out.append(entry)
        return out

    def _replication_entry(self, r: Replication) -> dict:
        entry = {"id": r.id, "type": "local", "source": r.source, "target": r.target, "guest": r.guest, "jobnum": r.jobnum,
                 "vmtype": self.guests[r.guest].kind, "schedule": "*/15", "last_sync": r.last_sync,
                 "last_try": self.now - 300, "fail_count": r.fail_count, "duration": r.duration,
                 "next_sync": self.now + 600}
        if r.fail_count:
            entry["error"] = "command 'zfs snapshot rpool/data/vm-101-disk-0@__replicate_101-0__' failed: exit code 1"
        return entry

    def route(self, local: str, path: str, query: dict) -> object:
        parts = path.strip("/").split("/")
        if path == "/version":
            return {"version": "8.3.2", "release": "8.3", "repoid": "3e76eec21c4a14a7"}
        if path == "/cluster/status":
            return self.cluster_status(local)
        if path == "/cluster/resources":
            return self.resources(query.get("type"))
        if path == "/cluster/backup-info/not-backed-up":
            return [{"vmid": g.vmid, "name": g.name, "type": g.kind} for _, g in sorted(self.guests.items()) if not g.backed_up]
        if path == "/cluster/config/qdevice":
            return {}
        if len(parts) >= 3 and parts[0] == "nodes" and parts[1] == local:
            rest = parts[2:]
            if rest == ["subscription"]:
                return {"status": "notfound", "message": "There is no subscription key", "serverid": "0123456789ABCDEF"}
            if len(rest) == 1 and rest[0] in ("qemu", "lxc"):
                return [{"vmid": g.vmid, "name": g.name, "status": g.status} for _, g in sorted(self.guests.items())
                        if g.node == local and g.kind == rest[0]]
            if len(rest) == 3 and rest[0] in ("qemu", "lxc") and rest[2] == "config":
                g = self.guests.get(int(rest[1]))
                if g and g.node == local and g.kind == rest[0]:
                    return {"name": g.name, "onboot": g.onboot, "cores": 2, "memory": 4096}
            jobs = [r for r in self.replications if r.source == local]
            if rest == ["replication"]:
                return [self._replication_entry(r) for r in jobs]
            if len(rest) == 3 and rest[0] == "replication" and rest[2] == "status":
                job = next((r for r in jobs if r.id == rest[1]), None)
                if job:
                    return self._replication_entry(job)
        raise LookupError(path)

    # --- servers
    def start(self, node: str, cert: Path, key: Path) -> int:
        cluster = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                url = urlsplit(self.path)
                path = url.path.removeprefix("/api2/json")
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                with cluster.lock:
                    cluster.requests.append((node, path))
                    if self.headers.get("Authorization") != f"PVEAPIToken={TOKEN}":
                        code, payload = 401, {"data": None}
                    else:
                        try:
                            code, payload = 200, {"data": cluster.route(node, path, query)}
                        except LookupError:
                            cluster.unknown.append(path)
                            code, payload = 501, {"data": None}
                body = json.dumps(payload).encode()
                self.send_response(code, "OK" if code == 200 else "Method not implemented" if code == 501 else "authentication failure")
                self.send_header("Content-Type", "application/json;charset=UTF-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        server = QuietServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        # Wrapped before it serves: every connection is TLS, as PVE's pveproxy on 8006.
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        self.servers[node] = server
        return server.server_address[1]

    def stop(self, node: str) -> None:
        stop_http(self.servers.pop(node, None))

    def stop_all(self) -> None:
        for node in list(self.servers):
            self.stop(node)
