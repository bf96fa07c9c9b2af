"""Loki's and the Collector's configuration as the charts render it, changed only to run on 127.0.0.1.

The source is `helm template` of the loki and otel-collector releases (tools/manifests.py):
Loki's config.yaml, its runtime-config.yaml (the tenants' limits and retention) and its
container's arguments; the Collector's `relay` config and its container's arguments. Every
change, in this one place:

Loki
  - server: HTTP and gRPC on 127.0.0.1 at free ports (the chart: 3100 and 9095 on the pod IP);
  - memberlist: bound to 127.0.0.1 at a free port, joining itself (the chart joins the
    loki-memberlist Service); common.instance_addr and -memberlist.advertise-addr are 127.0.0.1
    (the pod IP in Kubernetes), and so common.ring.kvstore.store is memberlist (an instance_addr
    makes Loki apply the common ring config, Consul by default, to every ring);
  - common.compactor_grpc_address: this Loki's gRPC port (the chart: the loki Service);
  - /var/loki (path_prefix, chunks, rules, compactor, ruler WAL, bloom shipper) and
    /etc/loki (config, runtime config): directories of the run;
  - the memcached chunk and results caches are dropped: the chart's memcached StatefulSets do
    not run here;
  - only when a test asks (`LokiTuning`): a shorter compaction interval and retention delete
    delay, and an older reject_old_samples_max_age, so retention can
    be seen working in seconds on lines older than the shortest retention rule;
  - only when a test asks, between a stop and the next start (`drop_shipped_index_copies`): the
    ingester's local copies of the index files it has shipped to the store are removed, as Loki
    itself removes them 20 minutes after the upload (index_cache_validity + 3 x resync_interval,
    at their defaults). A test pushing lines already past their retention needs it: a restarted
    Loki reloads those copies, serves queries from them next to the store's index and ships them
    again, so the compactor's deletion would be undone by the test's own restart, not by anything
    that happens in production (docs/logs-and-traces.md, "Retention, proven").
The Loki gateway (the chart's nginx, run by Debian's nginx)
  - listens on 127.0.0.1 at a free port (the chart: 8080 on the pod, v4 and v6); its pid,
    temp files and the htpasswd file the chart mounts from the Secret are in the run's directory;
  - no cluster DNS resolver and Loki's address is the local Loki's;
  - no syslog access log: the chart's access-log exporter sidecar does not run here.
The Collector
  - every `${env:MY_POD_IP}:<port>` (receivers, the span-metrics Prometheus exporter,
    health_check, its own telemetry): 127.0.0.1 at a free port;
  - otlp/tempo: the traces backend given (Tempo cannot be built here; tests stand a second
    Collector in its place);
  - otlphttp/loki-<tenant>: the local gateway's /otlp, as in the cluster; the tenants'
    passwords its basicauth extensions read from `${env:...}` are set in its environment;
  - file_storage's directory and the pod-log paths of file_log: directories of the run;
  - the `${env:OTEL_K8S_*}` of its telemetry resource are set in its environment;
  - only when a test asks: a shorter span-metrics flush interval.
Prometheus (scraping them)
  - one static job per ServiceMonitor endpoint, labelled as the Prometheus Operator labels
    (job = the Service, namespace) and relabelled as the endpoint says; the target is the local
    process; the interval is shorter when a test asks;
  - the rendered rule files, each group evaluated at a shorter interval (`rule_file`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tools.manifests import RenderedRelease

LOKI_RELEASE = "loki"
COLLECTOR_RELEASE = "otel-collector"
LOCALHOST = "127.0.0.1"
POD_IP_ENDPOINT = re.compile(r"^\$\{env:MY_POD_IP\}:(\d+)$")
POD_LOGS_DIR = "/var/log/pods"
TELEMETRY_ENV = ("OTEL_K8S_NODE_NAME", "OTEL_K8S_NODE_IP", "OTEL_K8S_NAMESPACE", "OTEL_K8S_POD_NAME",
                 "OTEL_K8S_POD_IP")


class LocalConfigError(Exception):
    pass


def _configmap_entry(rendered: RenderedRelease, key: str) -> str:
    found = [cm["data"][key] for cm in rendered.objects_of({"ConfigMap"}) if key in (cm.get("data") or {})]
    if len(found) != 1:
        raise LocalConfigError(f"release {rendered.release.name}: {len(found)} ConfigMaps hold {key!r}, expected 1")
    return found[0]


def _container_args(rendered: RenderedRelease, kinds: set[str], container: str) -> list[str]:
    for workload in rendered.objects_of(kinds):
        for c in workload["spec"]["template"]["spec"]["containers"]:
            if c["name"] == container:
                return list(c.get("args") or [])
    raise LocalConfigError(f"release {rendered.release.name}: no container {container!r} in {sorted(kinds)}")


def _rebase(path: str, old: str, new: Path) -> str:
    if not path.startswith(old):
        raise LocalConfigError(f"{path} is not under {old}: review the changes of {__name__}")
    return str(new) + path[len(old):]


# --- Loki ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LokiTuning:
    """Test-only: durations shortened so the compactor's work is seen in seconds."""

    compaction_interval: str = "10m"
    retention_delete_delay: str | None = None
    reject_old_samples_max_age: str | None = None


@dataclass
class LocalLoki:
    config: dict
    runtime: dict
    args: list[str]            # the chart's container arguments, changed as listed above
    http_port: int
    grpc_port: int
    directory: Path

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.http_port}"

    @property
    def config_file(self) -> Path:
        return self.directory / "config" / "config.yaml"

    def write(self) -> list[str]:
        """Write config and runtime config; the command line (after the binary)."""
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(yaml.safe_dump(self.config, sort_keys=False))
        runtime_file = Path(self.config["runtime_config"]["file"])
        runtime_file.parent.mkdir(parents=True, exist_ok=True)
        runtime_file.write_text(yaml.safe_dump(self.runtime, sort_keys=False))
        return self.args


def _shipped_index_copies(loki: LocalLoki) -> list[tuple[Path, Path]]:
    """(local copy, shipped object) of each index file the ingester built (Loki's layout:
    <active_index_directory>/multitenant/<table>/<file>, shipped gzipped to index/<table>/ in the store)."""
    config = loki.config
    active = config["storage_config"].get("tsdb_shipper", {}).get("active_index_directory") \
        or f"{config['common']['path_prefix']}/tsdb-shipper-active"
    store = Path(config["common"]["storage"]["filesystem"]["chunks_directory"]) / "index"
    return [(copy, store / table.name / f"{copy.name}.gz")
            for table in sorted((Path(active) / "multitenant").glob("*")) for copy in sorted(table.glob("*.tsdb"))]


def drop_shipped_index_copies(loki: LocalLoki) -> list[str]:
    """Remove the stopped ingester's local copies of index files the store holds (see the module's
    docstring); one not shipped yet is an error, since removing it would lose data."""
    copies = _shipped_index_copies(loki)
    unshipped = [str(copy) for copy, shipped in copies if not shipped.is_file()]
    if unshipped:
        raise LocalConfigError(f"index files not in the store, kept: {unshipped}")
    for copy, _ in copies:
        copy.unlink()
    return [copy.name for copy, _ in copies]


def local_loki(rendered: RenderedRelease, directory: Path, ports: tuple[int, int, int],
               tuning: LokiTuning = LokiTuning()) -> LocalLoki:
    """Loki as the chart renders it, on 127.0.0.1 at (http, grpc, memberlist) ports, data in `directory`."""
    http_port, grpc_port, memberlist_port = ports
    config = yaml.safe_load(_configmap_entry(rendered, "config.yaml"))
    runtime = yaml.safe_load(_configmap_entry(rendered, "runtime-config.yaml"))
    data = directory / "data"
    config["server"].update({"http_listen_address": LOCALHOST, "http_listen_port": http_port,
                             "grpc_listen_address": LOCALHOST, "grpc_listen_port": grpc_port})
    config["memberlist"].update({"bind_addr": [LOCALHOST], "bind_port": memberlist_port,
                                 "advertise_port": memberlist_port,
                                 "join_members": [f"{LOCALHOST}:{memberlist_port}"]})
    common = config["common"]
    # The pod IP in Kubernetes. Setting it makes Loki take the common ring config for every ring,
    # whose store must then be said: memberlist, as the chart's memberlist section has it.
    common["instance_addr"] = LOCALHOST
    common["ring"] = {"kvstore": {"store": "memberlist"}}
    common["compactor_grpc_address"] = f"{LOCALHOST}:{grpc_port}"
    common["path_prefix"] = _rebase(common["path_prefix"], "/var/loki", data)
    for key, path in common["storage"]["filesystem"].items():
        common["storage"]["filesystem"][key] = _rebase(path, "/var/loki", data)
    config["compactor"]["working_directory"] = _rebase(config["compactor"]["working_directory"], "/var/loki", data)
    config["ruler"]["wal"]["dir"] = _rebase(config["ruler"]["wal"]["dir"], "/var/loki", data)
    bloom = config["storage_config"]["bloom_shipper"]
    bloom["working_directory"] = _rebase(bloom["working_directory"], "/var/loki", data)
    config["runtime_config"]["file"] = _rebase(config["runtime_config"]["file"], "/etc/loki", directory)
    config["chunk_store_config"].pop("chunk_cache_config", None)
    config["query_range"].pop("results_cache", None)
    config["compactor"]["compaction_interval"] = tuning.compaction_interval
    if tuning.retention_delete_delay:
        config["compactor"]["retention_delete_delay"] = tuning.retention_delete_delay
    if tuning.reject_old_samples_max_age:
        config["limits_config"]["reject_old_samples_max_age"] = tuning.reject_old_samples_max_age
    args = []
    for arg in _container_args(rendered, {"StatefulSet", "Deployment"}, "loki"):
        if arg.startswith("-config.file="):
            arg = f"-config.file={directory / 'config' / 'config.yaml'}"
        elif arg.startswith("-memberlist.advertise-addr="):
            arg = f"-memberlist.advertise-addr={LOCALHOST}"
        args.append(arg)
    return LocalLoki(config, runtime, args, http_port, grpc_port, directory)


# --- the Loki gateway --------------------------------------------------------------------------

GATEWAY_CONFIG_MAP = "loki-gateway"
# Each change from the rendered nginx.conf, and nothing else ({port}, {dir}, {loki} filled in).
GATEWAY_LOCAL_CHANGES = {
    "listen             8080;": "listen {port};",
    "listen             [::]:8080;": "",
    "pid        /tmp/nginx.pid;": "pid {dir}/nginx.pid;",
    "/tmp/": "{dir}/",  # the chart's nginx keeps its temp paths there, inside its pod
    "/etc/nginx/secrets/.htpasswd": "{dir}/.htpasswd",
    "resolver kube-dns.kube-system.svc.cluster.local.;": "",
    "http://loki.logging.svc.cluster.local:3100": "{loki}",
    "access_log syslog:server=127.0.0.1:8514,nohostname access_log_exporter if=$track;": "",
}


@dataclass
class LocalGateway:
    config: str
    htpasswd: str
    port: int
    directory: Path

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def write(self) -> list[str]:
        """nginx's arguments. Started as root, nginx hands requests to `nobody` workers; the chart's
        runs unprivileged and never switches users, so neither do these."""
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "nginx.conf").write_text(self.config)
        (self.directory / ".htpasswd").write_text(self.htpasswd)
        return ["-p", str(self.directory), "-c", str(self.directory / "nginx.conf"), "-g", "daemon off; user root;"]


def local_gateway(rendered: RenderedRelease, directory: Path, port: int, loki_url: str, htpasswd: str) -> LocalGateway:
    """The gateway the Loki chart renders (nginx.conf of its ConfigMap) in front of `loki_url`."""
    (config_map,) = [o for o in rendered.objects_of({"ConfigMap"}) if o["metadata"]["name"] == GATEWAY_CONFIG_MAP]
    config = config_map["data"]["nginx.conf"]
    for old, new in GATEWAY_LOCAL_CHANGES.items():
        if old not in config:
            raise LocalConfigError(f"the rendered gateway config no longer has {old!r}: review GATEWAY_LOCAL_CHANGES")
        config = config.replace(old, new)
    # Filled in last: the run's directory may itself be under /tmp/.
    for placeholder, value in {"{port}": f"{LOCALHOST}:{port}", "{dir}": str(directory), "{loki}": loki_url}.items():
        config = config.replace(placeholder, value)
    return LocalGateway(config, htpasswd, port, directory)


# --- the Collector ------------------------------------------------------------------------------

@dataclass
class LocalCollector:
    config: dict
    ports: dict[str, int]       # the chart's port number (as a string) -> the local one
    directory: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def config_file(self) -> Path:
        return self.directory / "relay.yaml"

    def port(self, chart_port: int) -> int:
        return self.ports[str(chart_port)]

    def write(self) -> list[str]:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(yaml.safe_dump(self.config, sort_keys=False))
        return [f"--config={self.config_file}"]


def _local_endpoints(node, ports: dict[str, int], free_port) -> object:
    """Each `${env:MY_POD_IP}:<port>` string, and the telemetry reader's host/port pair, moved to 127.0.0.1."""
    if isinstance(node, dict):
        if node.get("host") == "${env:MY_POD_IP}" and "port" in node:
            port = ports.setdefault(str(node["port"]), free_port())
            return {**node, "host": LOCALHOST, "port": port}
        return {k: _local_endpoints(v, ports, free_port) for k, v in node.items()}
    if isinstance(node, list):
        return [_local_endpoints(v, ports, free_port) for v in node]
    if isinstance(node, str) and (m := POD_IP_ENDPOINT.match(node)):
        return f"{LOCALHOST}:{ports.setdefault(m.group(1), free_port())}"
    return node


def rendered_collector_config(rendered: RenderedRelease) -> dict:
    return yaml.safe_load(_configmap_entry(rendered, "relay"))


def collector_tenants(rendered: RenderedRelease) -> list[str]:
    """The Loki tenants the rendered Collector signs in as (its basicauth extensions)."""
    config = rendered_collector_config(rendered)
    return [ext["client_auth"]["username"] for name, ext in (config.get("extensions") or {}).items()
            if name.split("/")[0] == "basicauth"]


def local_collector(rendered: RenderedRelease, directory: Path, free_port, gateway_url: str, passwords: dict[str, str],
                    traces_endpoint: str, span_metrics_flush: str | None = None) -> LocalCollector:
    """The Collector as the chart renders it, listening on 127.0.0.1 (free ports), exporting logs to
    `gateway_url` (the Loki gateway), signed in with `passwords` (tenant -> password), and spans to
    `traces_endpoint` (OTLP gRPC host:port in Tempo's place)."""
    config = rendered_collector_config(rendered)
    ports: dict[str, int] = {}
    config = _local_endpoints(config, ports, free_port)
    exporters = config["exporters"]
    exporters["otlp/tempo"]["endpoint"] = traces_endpoint
    for name, exporter in exporters.items():
        if name.startswith("otlphttp/loki-"):
            exporter["endpoint"] = f"{gateway_url}/otlp"
    env = {name: LOCALHOST if name.endswith("_IP") else f"local-{name.lower()}" for name in TELEMETRY_ENV}
    for name, extension in config["extensions"].items():
        if name.split("/")[0] == "basicauth":
            login = extension["client_auth"]
            variable = re.fullmatch(r"\$\{env:(\w+)\}", login["password"])
            if variable is None or login["username"] not in passwords:
                raise LocalConfigError(f"extension {name}: no password given for {login['username']!r}")
            env[variable.group(1)] = passwords[login["username"]]
    storage = config["extensions"]["file_storage"]
    storage["directory"] = str(directory / "file_storage")
    for receiver, spec in config["receivers"].items():
        if receiver.split("/")[0] in ("file_log", "filelog"):
            spec["include"] = [_rebase(p, POD_LOGS_DIR, directory / "pods") for p in spec["include"]]
            spec["exclude"] = [_rebase(p, POD_LOGS_DIR, directory / "pods") for p in spec.get("exclude", [])]
    if span_metrics_flush:
        config["connectors"]["spanmetrics"]["metrics_flush_interval"] = span_metrics_flush
    leftover = [p for p in re.findall(r"\$\{env:(\w+)\}", yaml.safe_dump(config)) if p not in env]
    if leftover:
        raise LocalConfigError(f"the rendered Collector config reads ${{env:{leftover[0]}}}, which {__name__} does not set")
    return LocalCollector(config, ports, directory, env)


def collector_args(rendered: RenderedRelease) -> list[str]:
    """The chart's container arguments (its --config is replaced by the local file)."""
    return [a for a in _container_args(rendered, {"DaemonSet", "Deployment", "StatefulSet"},
                                       "opentelemetry-collector") if not a.startswith("--config=")]


def pod_log_file(collector: LocalCollector, namespace: str, pod: str, container: str) -> Path:
    """Where the kubelet would write a container's log, under the run's pod-log directory."""
    path = collector.directory / "pods" / f"{namespace}_{pod}_0000" / container / "0.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


# --- Prometheus scraping them, as the ServiceMonitors say ------------------------------------------

def _selects(selector: dict, labels: dict) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions In/NotIn/Exists/DoesNotExist)."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for e in selector.get("matchExpressions") or []:
        value = labels.get(e["key"])
        if not {"In": lambda: value in e["values"], "NotIn": lambda: value not in e["values"],
                "Exists": lambda: value is not None, "DoesNotExist": lambda: value is None}[e["operator"]]():
            return False
    return True


def scrape_jobs(rendered: RenderedRelease, targets: dict[tuple[str, str], str], interval: str | None = None) -> list[dict]:
    """A scrape job per ServiceMonitor endpoint of the release, for each (Service, port name) that
    `targets` maps to a local host:port: labelled as the Prometheus Operator labels (job = the
    Service, namespace), then relabelled as the endpoint says. Changed: the target, and the
    interval when given."""
    jobs, found = [], set()
    services = {s["metadata"]["name"]: s for s in rendered.objects_of({"Service"})}
    for monitor in rendered.objects_of({"ServiceMonitor"}):
        for (service, port), address in targets.items():
            labels = services[service]["metadata"].get("labels") or {}
            if not _selects(monitor["spec"]["selector"], labels):
                continue
            for endpoint in monitor["spec"]["endpoints"]:
                if endpoint.get("port") != port:
                    continue
                found.add((service, port))
                jobs.append({
                    "job_name": f"serviceMonitor/{monitor['metadata']['name']}/{service}/{port}",
                    "scrape_interval": interval or endpoint.get("interval", "30s"),
                    "metrics_path": endpoint.get("path", "/metrics"),
                    "static_configs": [{"targets": [address],
                                        "labels": {"job": service, "namespace": rendered.release.namespace}}],
                    "relabel_configs": [{"source_labels": r.get("sourceLabels", []), "target_label": r["targetLabel"],
                                         "replacement": r.get("replacement", "$1"), "action": r.get("action", "replace")}
                                        for r in endpoint.get("relabelings") or []],
                })
    missing = sorted(set(targets) - found)
    if missing:
        raise LocalConfigError(f"release {rendered.release.name}: no ServiceMonitor endpoint scrapes {missing}")
    return jobs


def rule_file(rules: dict, group_interval: str) -> dict:
    """A rendered rule file with every group evaluated every `group_interval` (the only change)."""
    return {"groups": [{**group, "interval": group_interval} for group in rules["groups"]]}
