"""The runbook hub as served: real nginx answers every alert's runbook_url, every link resolves,
and the objects that serve it are valid Kubernetes that the policy pack accepts."""

from __future__ import annotations

import copy
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from model import runbook_hub
from model.grafana.runbooks import Runbook
from model.facts.links import PROMETHEUS_UID
from policy.manifests import object_problems
from tests.conftest import FAKE_SECRETS
from tests.configs import homelab_config, problems_of
from tests.kubernetes_schemas import kubernetes_error
from tools.offline_engine import ROOT

HUB_URL = "https://runbooks.home.arpa/observability"
GRAFANA = "https://grafana.home.arpa"
KINDS = {"ConfigMap": "kubernetes:core/v1:ConfigMap", "Deployment": "kubernetes:apps/v1:Deployment",
         "Service": "kubernetes:core/v1:Service", "Ingress": "kubernetes:networking.k8s.io/v1:Ingress"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _hub_objects(recording) -> dict[str, dict]:
    found = {}
    for kind, type_ in KINDS.items():
        (resource,) = [r for r in recording.of_type(type_) if r.inputs["metadata"]["name"] == "runbook-hub"]
        found[kind] = resource.inputs
    return found


def _alert_rules(homelab) -> dict[str, list[dict]]:
    return runbook_hub.alert_rules({p.stem: homelab.yaml(f"prometheus/rules/{p.name}") for p in homelab.rule_files})


# --- nginx serving the rendered site ------------------------------------------------------------

@pytest.fixture(scope="module")
def served(homelab, tmp_path_factory):
    """Debian's nginx with the rendered server block, the site where the pod mounts it."""
    work = tmp_path_factory.mktemp("hub")
    objects = _hub_objects(homelab.recording)
    data = objects["ConfigMap"]["data"]
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    root = work / "root"
    for volume in pod["volumes"]:
        for item in (volume.get("configMap") or {}).get("items", []):
            target = root / mounts[volume["name"]].lstrip("/") / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(data[item["key"]])
    port = free_port()
    server = (root / "etc/nginx/conf.d/default.conf").read_text()
    assert server.count(f"listen {runbook_hub.PORT};") == 1 and server.count(f"root {runbook_hub.WEB_ROOT};") == 1
    server = (server.replace(f"listen {runbook_hub.PORT};", f"listen 127.0.0.1:{port};")
              .replace(f"root {runbook_hub.WEB_ROOT};", f"root {root}{runbook_hub.WEB_ROOT};"))
    temp = "".join(f"{kind}_temp_path {work}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    # One process as the test's user: the worker could not read the test's private temp directory.
    (work / "nginx.conf").write_text(
        f"daemon off;\nmaster_process off;\npid {work}/nginx.pid;\nerror_log {work}/error.log;\nevents {{}}\n"
        f"http {{\ninclude /etc/nginx/mime.types;\naccess_log off;\n{temp}{server}}}\n")
    process = subprocess.Popen(["nginx", "-p", str(work), "-e", str(work / "error.log"), "-c", str(work / "nginx.conf")],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            urllib.request.urlopen(f"{base}/healthz", timeout=1).read()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"nginx did not start: {process.stdout.read().decode()}"
                                     f"{(work / 'error.log').read_text() if (work / 'error.log').exists() else ''}")
            time.sleep(0.05)
    yield base
    process.terminate()
    process.wait(timeout=10)


def _get(url: str) -> tuple[int, str, str]:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    try:
        with urllib.request.build_opener(NoRedirect).open(url, timeout=5) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.headers.get("Location", "")


def test_every_alerts_runbook_url_is_a_served_page_of_that_alert(homelab, served):
    rules = _alert_rules(homelab)
    assert len(rules) > 20
    for alert, variants in rules.items():
        for rule in variants:
            url = urlparse(rule["annotations"]["runbook_url"])
            assert (url.scheme, url.hostname) == ("https", "runbooks.home.arpa"), rule["annotations"]["runbook_url"]
            status, content_type, body = _get(served + url.path)
            assert status == 200 and content_type.startswith("text/html"), (alert, status, content_type)
            assert f"<h1>{alert}</h1>" in body and "<title>" in body


def test_the_hub_answers_its_index_and_nothing_else(served):
    status, _, body = _get(f"{served}/observability/")
    assert status == 200 and 'href="runbooks/BackupJobFailed.html"' in body
    assert _get(f"{served}/observability") == (301, "text/html", "/observability/")
    assert _get(f"{served}/observability/runbooks/NoSuchAlert.md")[0] == 404
    assert _get(f"{served}/observability/../../etc/passwd")[0] in (400, 404)


# --- links --------------------------------------------------------------------------------------

class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.links += [value for key, value in attrs if key in ("href", "src") and value]


def _links(path: Path) -> list[str]:
    parser = _Links()
    parser.feed(path.read_text())
    return parser.links


def test_every_link_of_every_page_resolves(homelab):
    site = homelab.out / "runbook-hub"
    pages = sorted(site.rglob("*.html"))
    assert {p.stem for p in pages} == set(_alert_rules(homelab)) | {"index"}  # a page per alert the stack defines
    dashboards = {json.loads(p.read_text())["uid"] for p in (ROOT / "dashboards").glob("*.json")}
    sources = {s["uid"]: s["type"] for s in homelab.yaml("grafana/datasources.json")}
    rules = _alert_rules(homelab)
    explored = set()
    for page in pages:
        alert = page.stem
        for link in _links(page):
            url = urlparse(link)
            if not url.scheme:
                target = (page.parent / url.path).resolve()
                assert target.is_file() and site.resolve() in target.parents, (page.name, link)
                continue
            assert link.startswith(f"{GRAFANA}/"), (page.name, link)
            if url.path.startswith("/d/"):
                assert url.path.removeprefix("/d/") in dashboards, (page.name, link)
                continue
            assert url.path == "/explore", (page.name, link)
            pane = json.loads(parse_qs(url.query)["panes"][0])["a"]
            (query,) = pane["queries"]
            assert pane["datasource"] == query["datasource"]["uid"] == PROMETHEUS_UID
            assert sources[PROMETHEUS_UID] == query["datasource"]["type"] == "prometheus"
            assert query["expr"] in [r["expr"] for r in rules[alert]], (alert, query["expr"])
            explored.add((alert, query["expr"]))
    # Every rule of every alert has its Explore link on its alert's page.
    assert explored == {(alert, r["expr"]) for alert, variants in rules.items() for r in variants}


def test_each_page_links_the_dashboard_of_its_alerts_service(homelab):
    site = homelab.out / "runbook-hub" / "runbooks"
    assert f"{GRAFANA}/d/backups" in _links(site / "BackupJobFailed.html")
    assert f"{GRAFANA}/d/latency-budget" in _links(site / "ApiGatewayAvailabilityBudgetBurn.html")
    assert f"{GRAFANA}/d/logs" in _links(site / "LokiCompactionStalled.html")


# --- rendering ----------------------------------------------------------------------------------

def test_markdown_is_rendered_by_the_library_and_raw_html_stays_text(tmp_path):
    source = tmp_path / "SomeAlert.md"
    source.write_text("# SomeAlert\n\n| a | b |\n| --- | --- |\n| 1 | `x<y` |\n\n<script>alert(1)</script>\n")
    rule = {"alert": "SomeAlert", "expr": "vector(1)", "labels": {"severity": "info", "service": "x"}}
    page = runbook_hub.render_runbook(Runbook("SomeAlert", source, "SomeAlert"), [rule], None, {})
    assert "<table>" in page and "<td><code>x&lt;y</code></td>" in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<li>Severity: info</li>" in page


def test_pages_too_large_for_a_configmap_stop_the_program():
    cfg = homelab_config()
    with pytest.raises(runbook_hub.SiteTooLarge, match="serve: false"):
        runbook_hub.check_size({"index.html": "x" * runbook_hub.CONFIG_MAP_LIMIT})
    data = runbook_hub.config_map_data(cfg, runbook_hub.build_site(cfg))
    assert sum(len(v.encode()) for v in data.values()) < runbook_hub.CONFIG_MAP_BUDGET


# --- the objects ---------------------------------------------------------------------------------

def test_the_hubs_objects_are_valid_kubernetes_and_pass_the_policy(homelab):
    for kind, obj in _hub_objects(homelab.recording).items():
        assert kubernetes_error(obj) is None, (kind, kubernetes_error(obj))
        assert list(object_problems(obj)) == [], kind


def test_the_schema_check_refuses_a_misspelt_field(homelab):
    ingress = copy.deepcopy(_hub_objects(homelab.recording)["Ingress"])
    ingress["spec"]["ingressClass"] = ingress["spec"].pop("ingressClassName")
    assert kubernetes_error(ingress) is not None


def test_the_ingress_serves_the_hub_url_with_cert_managers_certificate(homelab):
    objects = _hub_objects(homelab.recording)
    ingress = objects["Ingress"]
    assert ingress["metadata"]["annotations"] == {"cert-manager.io/cluster-issuer": "homelab-ca"}
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "runbooks.home.arpa"
    assert rule["http"]["paths"] == [{"path": "/observability", "pathType": "Prefix", "backend": {
        "service": {"name": "runbook-hub", "port": {"number": objects["Service"]["spec"]["ports"][0]["port"]}}}}]
    assert ingress["spec"]["tls"] == [{"hosts": ["runbooks.home.arpa"], "secretName": "runbook-hub-tls"}]
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"observability.homelab/workload": "prometheus"}
    assert objects["Service"]["spec"]["selector"] == objects["Deployment"]["spec"]["template"]["metadata"]["labels"]


def test_no_secret_reaches_the_hub(homelab):
    text = json.dumps([homelab.recording.raw_inputs[r.urn] for type_ in KINDS.values()
                       for r in homelab.recording.of_type(type_)])
    for value in FAKE_SECRETS.values():
        assert value not in text


def test_a_forge_instead_serves_nothing(tmp_path):
    from tests.stacks import write_stack
    from tools.offline_engine import run_program
    from tools.preview import render

    def forge(s):
        s["site"]["runbookHubUrl"] = "https://git.home.arpa/ops/homelab-observability/src/branch/main"
        s["site"]["runbookHub"] = {"serve": False}

    recording = run_program(write_stack(tmp_path, forge), FAKE_SECRETS)
    assert not [r for r in recording.of_type(KINDS["Deployment"]) if r.inputs["metadata"]["name"] == "runbook-hub"]
    out = render(recording, tmp_path / "build")
    assert not (out / "runbook-hub").exists()
    rules = json.dumps(next(r.inputs for r in recording.of_type("kubernetes:helm.sh/v3:Release")
                            if r.inputs["name"] == "kube-prometheus-stack"))
    assert "https://git.home.arpa/ops/homelab-observability/src/branch/main/runbooks/BackupJobFailed.md" in rules


def test_hub_settings_mistakes_are_reported_by_key_path():
    assert problems_of(lambda s: s["site"]["runbookHub"].pop("tlsSecretName"))["site.runbookHub.tlsSecretName"].startswith(
        "is required to serve an https runbookHubUrl")
    assert "unknown key" in problems_of(lambda s: s["site"]["runbookHub"].update(server=True))["site.runbookHub.server"]
    # A forge needs none of it.
    assert homelab_config(lambda s: s["site"].update(runbookHub={"serve": False})).site.runbook_hub.serve is False
