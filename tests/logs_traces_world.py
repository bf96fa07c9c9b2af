"""Real Loki, Collector and Prometheus processes on the configuration the charts render
(tools/logs_traces_local.py), and the clients the tests drive them with: Loki's push and query
APIs, OTLP/HTTP JSON spans and logs, RFC 5424 syslog over TCP."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from model.values import logs
from tools import logs_traces_local as local
from tools import manifests, upstream
from tools.drill.processes import ManagedProcess, free_port, wait_ready
from tools.drill.spans import gateway_spans  # noqa: F401 (the tests' synthetic API gateway, as the drill's)

COLLECTOR_HEALTH_PORT = 13133
OTLP_HTTP_PORT = 4318
OTLP_GRPC_PORT = 4317
SPAN_METRICS_PORT = 8889
COLLECTOR_TELEMETRY_PORT = 8888
SYSLOG_PORT = 1514


def upstream_binary(name: str) -> str:
    """A binary `make upstream` built at the chart's version; the test fails (never skips) without it."""
    for tool in upstream.TOOLS:
        for binary in tool.binaries:
            if binary.name == name:
                if not tool.built():
                    pytest.fail(f"{name} {tool.version()} is not built: run `make upstream` "
                                f"(cache {tool.install_dir()})")
                return str(tool.bin_dir() / name)
    raise KeyError(name)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120)


def rendered_release(homelab, name: str) -> manifests.RenderedRelease:
    releases = manifests.releases_of(json.loads((homelab.out / "resources.json").read_text()))
    return manifests.render(next(r for r in releases if r.name == name))


def wait_until(check, timeout: float, what: str, interval: float = 0.25):
    """Poll `check` until it returns something truthy; fail saying `what` did not happen."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"{what} within {timeout:.0f}s (last: {last!r})")


# --- HTTP ---------------------------------------------------------------------------------------

@dataclass
class Reply:
    status: int
    body: bytes

    def json(self):
        return json.loads(self.body)


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None, timeout: float = 30) -> Reply:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Reply(response.status, response.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, error.read())


# --- Loki -----------------------------------------------------------------------------------------

class Loki:
    def __init__(self, rendered, directory: Path, tuning: local.LokiTuning = local.LokiTuning()):
        self.local = local.local_loki(rendered, directory, (free_port(), free_port(), free_port()), tuning)
        self.args = self.local.write()
        self.process = ManagedProcess("loki", [upstream_binary("loki"), *self.args], directory / "loki.log")

    @property
    def url(self) -> str:
        return self.local.url

    def start(self, timeout: float = 90) -> "Loki":
        self.process.start()
        wait_ready(self.process, f"{self.url}/ready", timeout)
        return self

    def stop(self) -> None:
        self.process.stop()

    def push(self, tenant: str | None, streams: list[dict]) -> Reply:
        """POST /loki/api/v1/push; streams are {"stream": labels, "values": [[ns, line], ...]}."""
        headers = {"Content-Type": "application/json"}
        if tenant is not None:
            headers["X-Scope-OrgID"] = tenant
        return http("POST", f"{self.url}/loki/api/v1/push", json.dumps({"streams": streams}).encode(), headers)

    def query(self, tenant: str | None, logql: str, window: tuple[float, float] | None = None,
              limit: int = 5000) -> Reply:
        """query_range over `window` (seconds since the epoch), the last hour by default."""
        now = time.time()
        start, end = window or (now - 3600, now + 60)
        params = urllib.parse.urlencode({"query": logql, "start": int(start * 1e9), "end": int(end * 1e9),
                                         "limit": limit, "direction": "forward"})
        headers = {"X-Scope-OrgID": tenant} if tenant is not None else {}
        return http("GET", f"{self.url}/loki/api/v1/query_range?{params}", headers=headers)

    def lines(self, tenant: str, logql: str, window: tuple[float, float] | None = None) -> list[str]:
        reply = self.query(tenant, logql, window)
        assert reply.status == 200, reply.body
        return [v[1] for s in reply.json()["data"]["result"] for v in s["values"]]

    def all_lines(self, tenant: str, logql: str, since: float = 3600) -> list[str]:
        """Every line, page by page (a query returns at most 5000)."""
        start, end, found = time.time_ns() - int(since * 1e9), time.time_ns() + 60 * 10**9, []
        while True:
            params = urllib.parse.urlencode({"query": logql, "start": start, "end": end, "limit": 5000,
                                             "direction": "forward"})
            reply = http("GET", f"{self.url}/loki/api/v1/query_range?{params}", headers={"X-Scope-OrgID": tenant})
            assert reply.status == 200, reply.body
            page = sorted((int(v[0]), v[1]) for s in reply.json()["data"]["result"] for v in s["values"])
            if len(page) < 5000:
                return found + [line for _, line in page]
            last = page[-1][0]
            found += [line for ts, line in page if ts != last]
            start = last  # the entries at `last` come again on the next page

    def metrics(self) -> str:
        return http("GET", f"{self.url}/metrics").body.decode()

    def stored_chunk_starts(self, tenant: str) -> list[int]:
        """The first entry's time (ms since the epoch) of each chunk in the filesystem store: Loki keeps
        a chunk at <chunks_directory>/<tenant>/<fingerprint>/base64("<from>:<through>:<checksum>"), in hex."""
        tenant_dir = Path(self.local.config["common"]["storage"]["filesystem"]["chunks_directory"]) / tenant
        return sorted(int(base64.b64decode(chunk.name).decode().split(":")[0], 16)
                      for chunk in tenant_dir.glob("*/*"))


def stream(labels: dict, lines: list[str], at_ns: int | None = None) -> dict:
    start = at_ns or time.time_ns()
    return {"stream": labels, "values": [[str(start + i), line] for i, line in enumerate(lines)]}


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`, from the text exposition format."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, value = line.rsplit(" ", 1)
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


# --- the Loki gateway ------------------------------------------------------------------------------

# The tenants' gateway passwords in these tests (the stack generates them as Pulumi secrets).
TENANT_PASSWORDS = {"homelab": "homelab-password-5d1f0c", "nas": "nas-password-e83a7b"}
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


class Gateway:
    """Debian's nginx running the gateway config the Loki chart renders, in front of a real Loki."""

    def __init__(self, rendered, directory: Path, loki: Loki, passwords: dict[str, str] = TENANT_PASSWORDS):
        self.local = local.local_gateway(rendered, directory, free_port(), loki.url, logs.htpasswd(passwords))
        self.process = ManagedProcess("loki-gateway", [NGINX, *self.local.write()], directory / "nginx.log")

    @property
    def url(self) -> str:
        return self.local.url

    def start(self, timeout: float = 20) -> "Gateway":
        self.process.start()
        wait_ready(self.process, f"{self.url}/", timeout)  # the chart's liveness path, no credential needed
        return self

    def stop(self) -> None:
        self.process.stop()


# --- the Collector --------------------------------------------------------------------------------

class Collector:
    def __init__(self, name: str, config: dict, directory: Path, env: dict | None = None):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.config_file = directory / "config.yaml"
        self.config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        # `env` sets the variables the rendered config reads (${env:...}) for this process alone.
        variables = [f"{k}={v}" for k, v in (env or {}).items()]
        self.process = ManagedProcess(name, ["env", *variables, upstream_binary("otelcol-homelab"),
                                             f"--config={self.config_file}"], directory / f"{name}.log")

    def start(self, health_url: str, timeout: float = 60) -> "Collector":
        self.process.start()
        wait_ready(self.process, health_url, timeout)
        return self

    def stop(self) -> None:
        self.process.stop()

    def telemetry(self, port: int) -> str:
        return http("GET", f"http://127.0.0.1:{port}/metrics").body.decode()


def stack_collector(rendered, directory: Path, gateway_url: str, traces_endpoint: str,
                    span_metrics_flush: str | None = None) -> tuple[Collector, local.LocalCollector]:
    configured = local.local_collector(rendered, directory, free_port, gateway_url, TENANT_PASSWORDS, traces_endpoint,
                                       span_metrics_flush)
    return Collector("otelcol", configured.config, directory, configured.env), configured


class TracesBackend(Collector):
    """The traces backend in Tempo's place: a real Collector receiving OTLP gRPC at a fixed port
    across restarts, counting what it accepted (its own otelcol_receiver_accepted_spans)."""

    def __init__(self, directory: Path):
        self.grpc, self.health, self.telemetry_port = free_port(), free_port(), free_port()
        config = {
            "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{self.grpc}"}}}},
            "exporters": {"debug": {"verbosity": "basic"}},
            "extensions": {"health_check": {"endpoint": f"127.0.0.1:{self.health}"}},
            "service": {"extensions": ["health_check"],
                        "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["debug"]}},
                        "telemetry": {"metrics": {"readers": [{"pull": {"exporter": {"prometheus": {
                            "host": "127.0.0.1", "port": self.telemetry_port}}}}]}}},
        }
        super().__init__("tempo-stand-in", config, directory)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.grpc}"

    def start(self, timeout: float = 60) -> "TracesBackend":
        super().start(f"http://127.0.0.1:{self.health}/", timeout)
        return self

    def accepted_spans(self) -> float:
        """Since this process started."""
        return metric_value(self.telemetry(self.telemetry_port), "otelcol_receiver_accepted_spans")


# --- OTLP/HTTP JSON ---------------------------------------------------------------------------------

def _attributes(values: dict) -> list[dict]:
    def value(v):
        return {"intValue": str(v)} if isinstance(v, int) else {"stringValue": str(v)}
    return [{"key": k, "value": value(v)} for k, v in values.items()]


def otlp_logs(service: str, lines: list[str]) -> dict:
    now = time.time_ns()
    return {"resourceLogs": [{"resource": {"attributes": _attributes({"service.name": service})},
                              "scopeLogs": [{"logRecords": [{"timeUnixNano": str(now + i), "body": {"stringValue": line}}
                                                            for i, line in enumerate(lines)]}]}]}


def post_otlp(port: int, signal: str, payload: dict) -> Reply:
    return http("POST", f"http://127.0.0.1:{port}/v1/{signal}", json.dumps(payload).encode(),
                {"Content-Type": "application/json"})


def send_syslog(port: int, messages: list[str], hostname: str = "truenas") -> None:
    """RFC 5424 lines over TCP, newline-framed, as the NAS sends them."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    payload = "".join(f"<30>1 {stamp} {hostname} zfs 1 - - {m}\n" for m in messages).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)


# --- Prometheus -------------------------------------------------------------------------------------

class Prometheus:
    def __init__(self, directory: Path, scrape_configs: list[dict], rule_files: dict[str, dict],
                 evaluation_interval: str = "1s"):
        directory.mkdir(parents=True, exist_ok=True)
        files = []
        for name, rules in rule_files.items():
            (directory / name).write_text(yaml.safe_dump(rules, sort_keys=False))
            files.append(str(directory / name))
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": evaluation_interval},
                  "rule_files": files, "scrape_configs": scrape_configs}
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        self.port = free_port()
        self.process = ManagedProcess("prometheus", [
            upstream_binary("prometheus"), f"--config.file={directory / 'prometheus.yml'}",
            f"--storage.tsdb.path={directory / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}"],
            directory / "prometheus.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Prometheus":
        self.process.start()
        wait_ready(self.process, f"{self.url}/-/ready", 60)
        return self

    def stop(self) -> None:
        self.process.stop()

    def query(self, expr: str) -> list[dict]:
        reply = http("GET", f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
        assert reply.status == 200, reply.body
        return reply.json()["data"]["result"]

    def scalar(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None
