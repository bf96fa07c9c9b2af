"""Loki 3.7.6 and the Collector 0.158.0 (`make upstream`) running what the charts render, on 127.0.0.1.

Tempo cannot be built here (its tags' commits are not served by the Go module proxy): where the
Collector exports spans to Tempo, a second real Collector receives them in its place and counts
them. Every change made to the rendered configuration is listed in tools/logs_traces_local.py.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
import uuid

import pytest

from tests import logs_traces_world as world
from tests.logs_traces_world import (COLLECTOR_HEALTH_PORT, COLLECTOR_TELEMETRY_PORT, OTLP_HTTP_PORT,
                                     SPAN_METRICS_PORT, SYSLOG_PORT, metric_value, stream, wait_until)
from tools import logs_traces_local as local
from tools.drill.processes import free_port

MB = 2**20


@pytest.fixture(scope="module")
def loki_release(homelab):
    return world.rendered_release(homelab, local.LOKI_RELEASE)


@pytest.fixture(scope="module")
def collector_release(homelab):
    return world.rendered_release(homelab, local.COLLECTOR_RELEASE)


@pytest.fixture(scope="module")
def loki(loki_release, tmp_path_factory):
    server = world.Loki(loki_release, tmp_path_factory.mktemp("loki"))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def gateway(loki_release, loki, tmp_path_factory):
    server = world.Gateway(loki_release, tmp_path_factory.mktemp("gateway"), loki)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def tempo_stand_in(tmp_path_factory):
    backend = world.TracesBackend(tmp_path_factory.mktemp("tempo-stand-in")).start()
    try:
        yield backend
    finally:
        backend.stop()


@pytest.fixture(scope="module")
def collector(collector_release, gateway, tempo_stand_in, tmp_path_factory):
    process, configured = world.stack_collector(collector_release, tmp_path_factory.mktemp("otelcol"), gateway.url,
                                                tempo_stand_in.endpoint, span_metrics_flush="1s")
    process.start(f"http://127.0.0.1:{configured.port(COLLECTOR_HEALTH_PORT)}/")
    process.local = configured
    try:
        yield process
    finally:
        process.stop()


# --- the rendered configuration, checked by the binaries themselves --------------------------------

def test_loki_verifies_the_rendered_config(loki_release, tmp_path):
    configured = local.local_loki(loki_release, tmp_path, (free_port(), free_port(), free_port()))
    args = configured.write()
    done = world.run(world.upstream_binary("loki"), *args, "-verify-config")
    assert done.returncode == 0, done.stdout + done.stderr
    # What the chart renders for the tenants reaches Loki unchanged.
    assert set(configured.runtime["overrides"]) == {"homelab", "nas"}


def test_only_index_copies_the_store_holds_are_dropped(loki_release, tmp_path):
    configured = local.local_loki(loki_release, tmp_path, (free_port(), free_port(), free_port()))
    data = tmp_path / "data"
    shipped, unshipped = (data / "tsdb-shipper-active/multitenant/index_20784" / f"{n}-vm-1.tsdb" for n in (1, 2))
    shipped.parent.mkdir(parents=True)
    shipped.write_bytes(b"tsdb")
    unshipped.write_bytes(b"tsdb")
    (data / "chunks/index/index_20784").mkdir(parents=True)
    (data / "chunks/index/index_20784" / f"{shipped.name}.gz").write_bytes(b"gz")
    with pytest.raises(local.LocalConfigError, match=unshipped.name):
        local.drop_shipped_index_copies(configured)
    assert shipped.exists() and unshipped.exists()  # nothing removed when one is not in the store
    unshipped.unlink()
    assert local.drop_shipped_index_copies(configured) == [shipped.name]
    assert not shipped.exists()


def test_the_collector_validates_the_rendered_config(collector_release, tmp_path):
    configured = local.local_collector(collector_release, tmp_path, free_port, "http://127.0.0.1:1",
                                       world.TENANT_PASSWORDS, "127.0.0.1:2")
    configured.write()
    done = world.run("env", *[f"{k}={v}" for k, v in configured.env.items()],
                     world.upstream_binary("otelcol-homelab"), "validate", f"--config={configured.config_file}")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_collector_refuses_a_component_it_was_not_built_with(collector_release, tmp_path):
    """The distribution holds what the config names, no more: validate is a real check."""
    configured = local.local_collector(collector_release, tmp_path, free_port, "http://127.0.0.1:1",
                                       world.TENANT_PASSWORDS, "127.0.0.1:2")
    configured.config["processors"]["k8s_attributes"] = {}
    configured.write()
    done = world.run("env", *[f"{k}={v}" for k, v in configured.env.items()],
                     world.upstream_binary("otelcol-homelab"), "validate", f"--config={configured.config_file}")
    assert done.returncode != 0
    assert "k8s_attributes" in done.stdout + done.stderr


# --- tenants are walls --------------------------------------------------------------------------------

def test_a_tenant_never_sees_another_tenants_lines(loki, collector):
    run = uuid.uuid4().hex[:12]
    for tenant in ("homelab", "nas"):
        reply = loki.push(tenant, [stream({"service_name": "wall", "k8s_namespace_name": "default"},
                                          [f"{run} api {tenant} {i}" for i in range(5)])])
        assert reply.status == 204, reply.body
    # Through the Collector: OTLP logs go to the kubernetes tenant, the NAS' syslog to its own.
    assert world.post_otlp(collector.local.port(OTLP_HTTP_PORT), "logs",
                           world.otlp_logs("wall-app", [f"{run} otlp homelab {i}" for i in range(5)])).status == 200
    world.send_syslog(collector.local.port(SYSLOG_PORT), [f"{run} syslog nas {i}" for i in range(5)])

    def seen(tenant):
        return loki.lines(tenant, f'{{service_name=~".+"}} |= "{run}"')

    homelab = wait_until(lambda: (lines := seen("homelab")) and len(lines) >= 10 and lines, 60,
                         "the homelab tenant's 10 lines stored")
    nas = wait_until(lambda: (lines := seen("nas")) and len(lines) >= 10 and lines, 60,
                     "the nas tenant's 10 lines stored")
    time.sleep(6)  # a late line of the other tenant would show up after the Collector's 5 s batch
    homelab, nas = seen("homelab"), seen("nas")
    assert sorted(homelab) == sorted([f"{run} api homelab {i}" for i in range(5)]
                                     + [f"{run} otlp homelab {i}" for i in range(5)])
    assert len(nas) == 10 and all(" nas " in line for line in nas)
    assert not any("homelab" in line for line in nas)


def test_requests_without_a_tenant_are_refused(loki):
    reply = loki.push(None, [stream({"service_name": "anonymous"}, ["no tenant"])])
    assert reply.status == 401, reply.body
    reply = loki.query(None, '{service_name=~".+"}')
    assert reply.status == 401, reply.body
    # A tenant that exists nowhere sees nothing of the real ones.
    assert loki.lines("intruder", '{service_name=~".+"}') == []


# --- spans -> span metrics -> the latency SLO -----------------------------------------------------------

ROUTES = [("GET", "/orders", 200), ("POST", "/orders", 201), ("GET", "/orders/{id}", 500)]
LATENCY_SELECTOR = 'service_name="api-gateway",span_kind="SPAN_KIND_SERVER"'


def test_span_metrics_give_the_latency_slo_the_ratio_of_the_spans_sent(homelab, collector_release, collector,
                                                                       tempo_stand_in, tmp_path):
    slos = homelab.yaml("prometheus/rules/slos.yaml")
    latency = next(g for g in slos["groups"] if g["name"] == "slo-api-gateway-latency")
    threshold_ms = 500  # Pulumi.homelab.yaml: api-gateway requests served within 500 ms
    assert 'le=~"500' in latency["rules"][0]["expr"]
    jobs = local.scrape_jobs(collector_release, {
        ("otel-collector", "spanmetrics"): f"127.0.0.1:{collector.local.port(SPAN_METRICS_PORT)}"}, interval="1s")
    prometheus = world.Prometheus(tmp_path / "prometheus", jobs, {"slos.yaml": local.rule_file(slos, "1s")}).start()
    try:
        count = f"sum(traces_span_metrics_duration_milliseconds_count{{{LATENCY_SELECTOR}}})"
        # Every series the SLO reads exists before the measured spans: rate() counts increases only.
        warm_up = [120.0] * (20 * len(ROUTES))
        assert world.post_otlp(collector.local.port(OTLP_HTTP_PORT), "traces",
                               world.gateway_spans(warm_up, ROUTES)).status == 200
        wait_until(lambda: prometheus.scalar(count) == len(warm_up), 60, "the warm-up spans scraped")
        time.sleep(3)
        fast, slow = [80.0, 120.0, 310.0, 499.0] * 15, [501.0, 900.0, 2600.0] * 5
        durations = fast + slow
        for start in range(0, len(durations), 20):
            batch = world.gateway_spans(durations[start:start + 20], ROUTES)
            assert world.post_otlp(collector.local.port(OTLP_HTTP_PORT), "traces", batch).status == 200
        sent = len(warm_up) + len(durations)
        wait_until(lambda: prometheus.scalar(count) == sent, 60, f"{sent} spans counted by Prometheus")
        time.sleep(3)  # a rule evaluation after the last scrape
        expected = len([d for d in durations if d > threshold_ms]) / len(durations)
        burn = prometheus.scalar('slo:burn_rate:5m{slo="api-gateway-latency"}')
        budget = 1 - 99.0 / 100
        assert burn is not None
        assert burn * budget == pytest.approx(expected, rel=1e-9)
        # The same spans went on to the traces backend, each one.
        wait_until(lambda: tempo_stand_in.accepted_spans() == sent, 30, f"{sent} spans at the traces backend")
    finally:
        prometheus.stop()


# --- nothing lost on an outage --------------------------------------------------------------------------

def test_a_traces_backend_outage_and_a_collector_restart_lose_no_span(collector_release, gateway, tmp_path):
    """The Collector's persistent queue (file_storage) holds what it acknowledged while the
    backend is down, across its own restart, and delivers it when the backend is back."""
    backend = world.TracesBackend(tmp_path / "backend").start()
    process, configured = world.stack_collector(collector_release, tmp_path / "otelcol", gateway.url, backend.endpoint)
    health = f"http://127.0.0.1:{configured.port(COLLECTOR_HEALTH_PORT)}/"
    otlp = configured.port(OTLP_HTTP_PORT)
    process.start(health)
    try:
        assert world.post_otlp(otlp, "traces", world.gateway_spans([50.0] * 40, ROUTES)).status == 200
        wait_until(lambda: backend.accepted_spans() == 40, 30, "40 spans at the backend before the outage")
        backend.stop()
        acknowledged = 0
        for _ in range(10):
            assert world.post_otlp(otlp, "traces", world.gateway_spans([50.0] * 30, ROUTES)).status == 200
            acknowledged += 30
        time.sleep(7)  # past the batch timeout: the spans wait in the exporter's queue, failing
        process.stop()
        process.start(health)
        time.sleep(10)
        backend.start()  # a new process: it counts what arrives after the outage only
        wait_until(lambda: backend.accepted_spans() >= acknowledged, 120,
                   f"the {acknowledged} spans acknowledged during the outage delivered")
        time.sleep(3)
        assert backend.accepted_spans() == acknowledged  # none lost, none twice
    finally:
        process.stop()
        backend.stop()


def test_loki_killed_mid_ingest_keeps_every_acknowledged_line(loki_release, tmp_path):
    server = world.Loki(loki_release, tmp_path).start()
    acknowledged: list[str] = []
    refused = 0
    stop = threading.Event()

    def push():
        nonlocal refused
        batch = 0
        while not stop.is_set():
            lines = [f"wal batch {batch} line {i}" for i in range(10)]
            try:
                reply = server.push("homelab", [stream({"service_name": "wal", "k8s_namespace_name": "default"},
                                                       lines)])
            except OSError:
                reply = None  # Loki is down: nothing was acknowledged
            if reply is not None and reply.status == 204:
                acknowledged.extend(lines)
            else:
                refused += 1
                time.sleep(0.2)
            batch += 1

    pusher = threading.Thread(target=push, daemon=True)
    pusher.start()
    try:
        wait_until(lambda: len(acknowledged) >= 300, 60, "300 lines acknowledged before the crash")
        server.process.kill()  # SIGKILL: no flush on shutdown, the WAL alone holds the lines
        server.start()
        before_restart = len(acknowledged)
        wait_until(lambda: len(acknowledged) >= before_restart + 300, 60, "ingesting again after the restart")
        stop.set()
        pusher.join(30)
        stored = set(server.all_lines("homelab", '{service_name="wal"}'))
        lost = [line for line in acknowledged if line not in stored]
        assert lost == [], f"{len(lost)} of {len(acknowledged)} acknowledged lines lost"
        assert refused >= 1  # the crash was seen by the client
        print(f"\nLoki killed mid-ingest: {len(acknowledged)} lines acknowledged, {len(lost)} lost")
    finally:
        stop.set()
        server.stop()


# --- limits under a NAS burst ------------------------------------------------------------------------------

def _line(size: int, tag: str) -> str:
    return (tag + " " + "x" * size)[:size]


def _burst_push(loki: world.Loki, tenant: str, size: int, tag: str) -> world.Reply:
    """One push of `size` bytes of lines (what Loki's limits count), over 4 streams so no stream's
    own limit (nas: 24 MiB burst) is what refuses it."""
    lines = [_line(1024, f"{tag} {i}") for i in range(size // 1024)]
    if size % 1024:
        lines.append(_line(size % 1024, f"{tag} tail"))
    streams = [stream({"service_name": "nas-burst", "stream": str(n)}, lines[n::4]) for n in range(4)]
    return loki.push(tenant, streams)


def test_a_nas_burst_gets_429_at_the_configured_burst_and_homelab_is_unaffected(loki):
    """Loki's ingestion limit is a token bucket of the tenant's burst, refilled at its rate: a push
    larger than the burst is refused whole (429), one of exactly the burst passes on a full bucket."""
    limits = loki.local.runtime["overrides"]["nas"]
    burst, rate = limits["ingestion_burst_size_mb"] * MB, limits["ingestion_rate_mb"] * MB
    run = uuid.uuid4().hex[:8]
    homelab_replies: list[int] = []
    stop = threading.Event()

    def homelab_traffic():
        i = 0
        while not stop.is_set():
            lines = [f"{run} steady {i} {j}" for j in range(100)]
            homelab_replies.append(loki.push("homelab", [stream({"service_name": "steady"}, lines)]).status)
            i += 1
            time.sleep(0.05)

    steady = threading.Thread(target=homelab_traffic, daemon=True)
    steady.start()
    try:
        time.sleep(burst / rate)  # a full bucket, whatever other tests pushed for nas
        over = _burst_push(loki, "nas", burst + 1024, f"{run} over")
        assert over.status == 429, over.body
        assert f"limit: {rate} bytes/sec" in over.body.decode(), over.body
        at = _burst_push(loki, "nas", burst, f"{run} at")
        assert at.status == 204, at.body
        print(f"\nnas: 429 for a push of {(burst + 1024) / MB:.3f} MiB, 204 for {burst / MB:.3f} MiB "
              f"(configured burst {burst / MB:.0f} MiB, rate {rate / MB:.0f} MiB/s)")
    finally:
        stop.set()
        steady.join(10)
    assert homelab_replies and set(homelab_replies) == {204}, "homelab refused during the NAS burst"
    assert len(loki.all_lines("homelab", f'{{service_name="steady"}} |= "{run}"')) == 100 * len(homelab_replies)
    refused = metric_value(loki.metrics(), "loki_discarded_samples_total", tenant="nas", reason="rate_limited")
    assert refused >= (burst + 1024) // 1024  # each line of the refused push, counted as the alert reads it


def test_a_syslog_burst_through_the_collector_is_retried_not_dropped(loki, collector):
    """Loki refuses the NAS' syslog flood with 429; the Collector's exporter retries it (its
    retry_on_failure default, persistent queue) until the tenant's rate lets it in: nothing dropped."""
    telemetry = collector.local.port(COLLECTOR_TELEMETRY_PORT)
    run = uuid.uuid4().hex[:8]
    time.sleep(10)  # the tenant's bucket refills after the previous burst
    discarded_before = metric_value(loki.metrics(), "loki_discarded_samples_total", tenant="nas")
    count = 40 * 1024  # ~40 MiB of 1 KiB lines: above the tenant's 32 MiB burst and the stream's 24 MiB
    sent = 0
    for start in range(0, count, 4096):
        world.send_syslog(collector.local.port(SYSLOG_PORT),
                          [_line(1000, f"{run} {i}") for i in range(start, min(count, start + 4096))])
        sent = min(count, start + 4096)

    def stored():
        reply = loki.query("nas", f'sum(count_over_time({{service_name="syslog"}} |= "{run}" [1h]))')
        result = reply.json()["data"]["result"] if reply.status == 200 else []
        return int(float(result[-1]["values"][-1][1])) if result else 0

    wait_until(lambda: stored() >= sent, 240, f"all {sent} syslog lines stored", interval=2)
    refused = metric_value(loki.metrics(), "loki_discarded_samples_total", tenant="nas") - discarded_before
    own = collector.telemetry(telemetry)
    failed = metric_value(own, "otelcol_exporter_send_failed_log_records", exporter="otlphttp/loki-nas")
    print(f"\nsyslog burst: {sent} lines, Loki refused {refused:.0f} line deliveries (429), "
          f"the Collector dropped {failed:.0f}, stored {stored()}")
    assert refused > 0, "the burst never reached the limit"
    assert failed == 0
    assert stored() == sent


# --- retention, the compactor and the Loki health rules -----------------------------------------------------

def _selectors(prometheus: world.Prometheus, expr: str) -> list[str]:
    """Every series selector of a PromQL expression, by Prometheus' own parser."""
    reply = world.http("POST", f"{prometheus.url}/api/v1/parse_query",
                       urllib.parse.urlencode({"query": expr}).encode(),
                       {"Content-Type": "application/x-www-form-urlencoded"})
    assert reply.status == 200, reply.body
    found = []

    def walk(node):
        if isinstance(node, dict):
            if node.get("type") in ("vectorSelector", "matrixSelector"):
                found.append("{" + ",".join(f'{m["name"]}{m["type"]}"{m["value"]}"' for m in node["matchers"]) + "}")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(reply.json()["data"])
    return found


DAY_NS = 86400 * 10**9
# Pulumi.homelab.yaml: kube-system's lines are kept 7 days, monitoring's 14 (retention_stream rules).
RETENTION_CASES = {  # stream: (namespace, age, deleted)
    "kube-system-10d": ("kube-system", 10 * DAY_NS, True),
    "kube-system-7d-less-1h": ("kube-system", 7 * DAY_NS - 3600 * 10**9, False),
    "kube-system-now": ("kube-system", 0, False),
    "monitoring-10d": ("monitoring", 10 * DAY_NS + 10**9, False),  # a second apart from kube-system's
}


def test_the_compactor_deletes_what_a_namespace_rule_expires_and_every_loki_health_rule_reads_real_series(
        homelab, loki_release, tmp_path):
    tuning = local.LokiTuning(compaction_interval="3s", retention_delete_delay="3s",
                              reject_old_samples_max_age="30d")
    server = world.Loki(loki_release, tmp_path / "loki", tuning).start()
    prometheus = None
    now = time.time_ns()
    at = {name: now - age for name, (_, age, _) in RETENTION_CASES.items()}
    try:
        for name, (namespace, _, _) in RETENTION_CASES.items():  # a stream each: a chunk holds one stream
            reply = server.push("homelab", [stream({"service_name": name, "k8s_namespace_name": namespace},
                                                   [f"{name} {i}" for i in range(50)], at[name])])
            assert reply.status == 204, reply.body
        server.stop()  # flushes the chunks and ships the index (flush_on_shutdown)
        assert local.drop_shipped_index_copies(server.local)  # see its docstring: lines pushed already old
        assert server.stored_chunk_starts("homelab") == sorted(t // 10**6 for t in at.values())
        restarted = time.time()
        server.start()
        # A line over Loki's max_line_size: refused by a limit, as the ingestion alert counts.
        reply = server.push("homelab", [stream({"service_name": "huge"}, ["y" * (300 * 1024)])])
        assert reply.status == 400, reply.body
        wait_until(lambda: metric_value(server.metrics(), "loki_compactor_apply_retention_last_successful_run_timestamp_seconds")
                   > restarted, 120, "the compactor applied retention after the restart")

        def lines(name):
            return server.lines("homelab", f'{{service_name="{name}"}}', window=(at[name] / 1e9 - 60, at[name] / 1e9 + 60))

        # Out of the index at once: the one expired chunk marked, its lines found by no query.
        assert metric_value(server.metrics(), "loki_boltdb_shipper_retention_marker_count_total") == 1
        assert {name: len(lines(name)) for name in RETENTION_CASES} == {
            name: 0 if deleted else 50 for name, (_, _, deleted) in RETENTION_CASES.items()}

        jobs = local.scrape_jobs(loki_release, {("loki", "http-metrics"): server.url.removeprefix("http://")}, "1s")
        rules = homelab.yaml("prometheus/rules/loki.yaml")
        prometheus = world.Prometheus(tmp_path / "prometheus", jobs, {"loki.yaml": local.rule_file(rules, "1s")}).start()
        wait_until(lambda: prometheus.scalar("max(loki_compactor_apply_retention_last_successful_run_timestamp_seconds)"),
                   60, "the compactor's metrics scraped")
        missing = {}
        for group in rules["groups"]:
            for rule in group["rules"]:
                empty = [s for s in _selectors(prometheus, rule["expr"]) if not prometheus.query(s)]
                if empty:
                    missing[rule.get("alert") or rule.get("record")] = empty
        assert missing == {}, f"rules reading series Loki 3.7.6 does not export (or did not yet): {missing}"

        # Then out of the store: the sweeper lists the marks once a minute, deletes past the delete delay.
        deleted = 'loki_boltdb_shipper_retention_sweeper_chunk_deleted_duration_seconds_count'
        wait_until(lambda: metric_value(server.metrics(), deleted, status="success"), 120,
                   "the sweeper deleted the marked chunk")
        assert metric_value(server.metrics(), deleted) == 1
        assert server.stored_chunk_starts("homelab") == sorted(
            t // 10**6 for name, t in at.items() if not RETENTION_CASES[name][2])
    finally:
        if prometheus is not None:
            prometheus.stop()
        server.stop()
