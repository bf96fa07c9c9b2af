"""The runbook hub: runbooks/*.md rendered to HTML and served by nginx at site.runbookHubUrl.

Every alert's runbook_url is `<hub>/runbooks/<AlertName>.md` (model/facts/links.py), the path a forge
would render the Markdown at. The stack serves the same URLs: each runbook becomes
runbooks/<AlertName>.html, and nginx answers `<path>/runbooks/<AlertName>.md` with that page,
so alerts link the same whether the hub is served here or by a forge (`serve: false`).

Pages are rendered by markdown-it-py (CommonMark with tables; raw HTML in a runbook is shown
as text, not passed through). Each page links its alert's Grafana dashboard (the one its
`service` label selects, model/facts/links.py) and, for every rule of the alert this stack defines,
Grafana Explore running the rule's expression on the Prometheus data source. All links
between pages are relative, so build/<stack>/runbook-hub/ reads the same in a browser.

The pages live in one ConfigMap, mounted under nginx's root at the URL's path; a ConfigMap
holds at most 1 MiB, which site_size_problem checks before anything is registered.
"""

from __future__ import annotations

import hashlib
import html
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from markdown_it import MarkdownIt

from model.rules.registry import rule_files as stack_rule_files
from model.config import Role, StackConfig
from model.grafana.dashboards import deployed_uids, load_dashboards
from model.grafana.runbooks import Runbook, defined_alerts, stack_runbooks
from model.pod_security import container_security_context, pod_security_context, with_cpu_limit
from model.values.helm import resources
from model.hosts import scheduling_for
from model.facts.links import dashboard_url, explore_url, linked_services

NAME = "runbook-hub"
# nginxinc's build of nginx runs as uid 101 on 8080, with its temp files under /tmp.
# Pinned by digest: a tag can be pushed again; IfNotPresent then never pulls another image.
IMAGE = "nginxinc/nginx-unprivileged:1.27.5-alpine@sha256:65e3e85dbaed8ba248841d9d58a899b6197106c23cb0ff1a132b7bfe0547e4c0"
# A UID of no host account (>= 10000); the image's nginx keeps its pid and temp files in /tmp,
# so it runs as any user.
USER = 10101
PORT = 8080
SERVICE_PORT = 80
WEB_ROOT = "/usr/share/nginx/html"
NGINX_CONF_KEY = "default.conf"
PAGES_DIR = "runbooks"
# The API server refuses a ConfigMap above 1 MiB (data, keys and metadata together).
CONFIG_MAP_LIMIT = 1024 * 1024
# Room left for keys and metadata.
CONFIG_MAP_BUDGET = CONFIG_MAP_LIMIT - 16 * 1024

STYLE = """\
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.5; }
nav { margin-bottom: 1rem; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
code, pre { background: #f4f4f4; }
pre { padding: 0.5rem; overflow-x: auto; }
.links { border: 1px solid #ccc; padding: 0.5rem 1rem; margin-bottom: 1rem; }
"""

_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")


def _link_pages_not_sources(state) -> None:
    """A runbook's relative link to another runbook (`PveNodeDown.md`) points at that page, so
    the site also reads right opened as files, not only through nginx's .md -> .html answer."""
    for token in state.tokens:
        for child in token.children or ():
            href = child.attrGet("href") if child.type == "link_open" else None
            if href and not urlparse(href).scheme and href.split("#")[0].endswith(".md"):
                path, _, fragment = href.partition("#")
                child.attrSet("href", path.removesuffix(".md") + ".html" + (f"#{fragment}" if fragment else ""))


_MARKDOWN.core.ruler.push("runbook_page_links", _link_pages_not_sources)


def hub_path(cfg: StackConfig) -> str:
    """The URL path the hub lives under ('' at the host's root, else '/observability')."""
    return urlparse(cfg.site.runbook_hub_url).path.rstrip("/")


def hub_host(cfg: StackConfig) -> str:
    return urlparse(cfg.site.runbook_hub_url).hostname or ""


def page_path(alert: str) -> str:
    """Where runbooks/<alert>.md's page is in the site (relative to the hub's root)."""
    return f"{PAGES_DIR}/{alert}.html"


def alert_rules(rule_files: dict[str, dict]) -> dict[str, list[dict[str, Any]]]:
    """Alert name -> its rules (one per severity, often), in file order."""
    found: dict[str, list[dict[str, Any]]] = {}
    for doc in rule_files.values():
        for group in doc.get("groups", []):
            for rule in group.get("rules", []):
                if "alert" in rule:
                    found.setdefault(rule["alert"], []).append(rule)
    return found


def _dashboard_links(grafana_url: str, services: list[str], titles: dict[str, str],
                     deployed: frozenset[str]) -> list[tuple[str, str]]:
    """(label, URL) of the deployed dashboards an alert's services select; a templated service may be any."""
    links: dict[str, str] = {}
    for service in services:
        if "{{" in service:
            # Known only when it fires: its dashboard_url annotation picks one of these.
            for known in linked_services(deployed):
                url = dashboard_url(grafana_url, known, deployed)
                links.setdefault(url, f"{titles.get(url.rsplit('/', 1)[-1], url)} (service {known})")
        else:
            url = dashboard_url(grafana_url, service, deployed)
            links.setdefault(url, titles.get(url.rsplit("/", 1)[-1], url))
    return [(label, url) for url, label in links.items()]


def _page(title: str, body: str, depth: int) -> str:
    up = "../" * depth
    nav = f'<nav><a href="{up}index.html">All runbooks</a></nav>\n' if depth else ""
    return (f'<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(title)} · Runbooks</title>\n"
            f'<link rel="stylesheet" href="{up}style.css">\n</head>\n<body>\n'
            f'{nav}{body}</body>\n</html>\n')


def _links_box(rules: list[dict[str, Any]], grafana_url: str | None, titles: dict[str, str],
               deployed: frozenset[str]) -> str:
    items = []
    if grafana_url:
        services = list(dict.fromkeys(r["labels"]["service"] for r in rules))
        for label, url in _dashboard_links(grafana_url, services, titles, deployed):
            items.append(f'<li>Dashboard: <a href="{html.escape(url)}">{html.escape(label)}</a></li>')
        for rule in rules:
            severity = rule["labels"].get("severity", "")
            url = explore_url(grafana_url, rule["expr"])
            items.append(f'<li>Explore: <a href="{html.escape(url)}">the {html.escape(severity)} rule\'s query</a></li>')
    severities = ", ".join(dict.fromkeys(r["labels"].get("severity", "?") for r in rules))
    items.append(f"<li>Severity: {html.escape(severities)}</li>")
    return '<aside class="links">\n<ul>\n' + "\n".join(items) + "\n</ul>\n</aside>\n"


def render_runbook(book: Runbook, rules: list[dict[str, Any]], grafana_url: str | None,
                   titles: dict[str, str], deployed: frozenset[str] = frozenset()) -> str:
    body = _MARKDOWN.render(book.path.read_text())
    box = _links_box(rules, grafana_url, titles, deployed)
    # The links right under the runbook's title, before its text.
    head, sep, rest = body.partition("</h1>\n")
    body = f"{head}{sep}{box}{rest}" if sep else box + body
    return _page(book.title, f"<main>\n{body}</main>\n", depth=1)


def render_stub(alert: str, rules: list[dict[str, Any]], grafana_url: str | None, titles: dict[str, str],
                deployed: frozenset[str]) -> str:
    """The page of an alert of alerts/ whose runbook is not written yet (the preview warns): its
    runbook_url answers with what the alert says and where the runbook goes, not a 404."""
    summary = rules[0]["annotations"].get("summary", "") if rules else ""
    body = (f"<h1>{html.escape(alert)}</h1>\n{_links_box(rules, grafana_url, titles, deployed)}"
            f"<p>{html.escape(summary)}</p>\n<p>No runbook yet: write <code>runbooks/{html.escape(alert)}.md</code> "
            "in the stack's repository.</p>\n")
    return _page(alert, f"<main>\n{body}</main>\n", depth=1)


def render_index(alerts: list[str], books: dict[str, Runbook], rules: dict[str, list[dict[str, Any]]]) -> str:
    rows = []
    for alert in alerts:
        own = rules.get(alert, [])
        severities = ", ".join(dict.fromkeys(r["labels"].get("severity", "?") for r in own))
        services = ", ".join(dict.fromkeys(r["labels"]["service"] for r in own))
        # What the alert says when it fires.
        summary = own[0]["annotations"]["summary"] if own else books[alert].title
        if alert not in books:
            summary += " (no runbook yet)"
        rows.append(f'<tr><td><a href="{page_path(alert)}">{html.escape(alert)}</a></td>'
                    f"<td>{html.escape(summary)}</td><td>{html.escape(severities)}</td><td>{html.escape(services)}</td></tr>")
    table = ("<table>\n<thead><tr><th>Alert</th><th>Summary</th><th>Severity</th><th>Service</th></tr></thead>\n<tbody>\n"
             + "\n".join(rows) + "\n</tbody>\n</table>\n")
    return _page("Runbooks", f"<main>\n<h1>Runbooks</h1>\n<p>One per alert of the stack.</p>\n{table}</main>\n", depth=0)


def site_files(cfg: StackConfig, rule_files: dict[str, dict], dashboard_titles: dict[str, str],
               runbooks_dir: Path | None = None) -> dict[str, str]:
    """Relative path -> content of every file of the hub: index.html, style.css and one page per
    alert the stack defines (`rule_files`), each from runbooks_dir, or a stub for an alert of
    alerts/ without one (model/preflight.py stops a built-in alert without one).

    `dashboard_titles`: uid -> title of the dashboards in dashboards/, for the links' labels."""
    rules = alert_rules(rule_files)
    alerts = defined_alerts(rule_files.values())
    found, _ = stack_runbooks(alerts, runbooks_dir)
    books = {book.alert: book for book in found}
    grafana_url = cfg.grafana.url if cfg.grafana else None
    deployed = deployed_uids(cfg)
    files = {"index.html": render_index(alerts, books, rules), "style.css": STYLE}
    for alert in alerts:
        files[page_path(alert)] = (
            render_runbook(books[alert], rules[alert], grafana_url, dashboard_titles, deployed) if alert in books
            else render_stub(alert, rules[alert], grafana_url, dashboard_titles, deployed))
    return files


def stack_runbook_list(cfg: StackConfig) -> list[Runbook]:
    """The runbooks of the alerts the stack defines, for the Runbook Hub dashboard's index."""
    return stack_runbooks(defined_alerts(stack_rule_files(cfg).values()))[0]


def config_map_key(path: str) -> str:
    """A ConfigMap key for a site path (keys are [-._a-zA-Z0-9]+); the volume's items map it back."""
    return path.replace("/", ".")


class SiteTooLarge(ValueError):
    pass


def check_size(files: dict[str, str]) -> None:
    size = sum(len(k) + len(v.encode()) for k, v in files.items())
    if size > CONFIG_MAP_BUDGET:
        raise SiteTooLarge(
            f"the runbook hub's pages are {size} bytes, above the {CONFIG_MAP_BUDGET} a ConfigMap can carry "
            f"(limit {CONFIG_MAP_LIMIT}): shorten runbooks or serve them from a forge (site.runbookHub.serve: false)")


def build_site(cfg: StackConfig) -> dict[str, str]:
    """The stack's hub: runbooks/, this stack's rules, dashboards/ for the links' labels; SiteTooLarge
    when it would not fit its ConfigMap."""
    files = site_files(cfg, stack_rule_files(cfg), {d.uid: d.title for d in load_dashboards()})
    check_size(config_map_data(cfg, files))
    return files


def nginx_conf(cfg: StackConfig) -> str:
    """The server block: the site under the hub's path, runbooks/<Alert>.md answered with its page."""
    prefix = hub_path(cfg)
    redirect = f"    location = {prefix} {{ return 301 {prefix}/; }}\n" if prefix else ""
    return (
        "server {\n"
        f"    listen {PORT};\n"
        "    server_name _;\n"
        f"    root {WEB_ROOT};\n"
        # Redirects keep the scheme and host the ingress was asked for.
        "    absolute_redirect off;\n"
        "    charset utf-8;\n"
        "    location = /healthz { access_log off; default_type text/plain; return 200 \"ok\\n\"; }\n"
        f"{redirect}"
        f"    location {prefix}/ {{ index index.html; }}\n"
        # The alerts' runbook_url (model/facts/links.py): <hub>/runbooks/<AlertName>.md.
        f"    location ~ ^({prefix}/{PAGES_DIR}/[A-Za-z0-9_-]+)\\.md$ {{ try_files $1.html =404; }}\n"
        "}\n"
    )


def config_map_data(cfg: StackConfig, files: dict[str, str]) -> dict[str, str]:
    return {NGINX_CONF_KEY: nginx_conf(cfg), **{config_map_key(p): text for p, text in files.items()}}


def labels() -> dict[str, str]:
    return {"app.kubernetes.io/name": NAME}


def _checksum(data: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for key in sorted(data):
        digest.update(key.encode() + b"\0" + data[key].encode() + b"\0")
    return digest.hexdigest()


def deployment_spec(cfg: StackConfig, data: dict[str, str], files: dict[str, str]) -> dict:
    pinned = scheduling_for(Role.PROMETHEUS)
    probe = {"httpGet": {"path": "/healthz", "port": PORT}, "periodSeconds": 10}
    return {
        "replicas": 1,
        "selector": {"matchLabels": labels()},
        "template": {
            # A new page rolls the pod: nginx then serves the new files at once, not after the kubelet's sync.
            "metadata": {"labels": labels(), "annotations": {"checksum/pages": _checksum(data)}},
            "spec": {
                "nodeSelector": pinned.node_selector(),
                "tolerations": pinned.tolerations(),
                "automountServiceAccountToken": False,
                "securityContext": pod_security_context(USER),
                "containers": [{
                    "name": "nginx",
                    "image": IMAGE,
                    "ports": [{"name": "http", "containerPort": PORT}],
                    "readinessProbe": probe,
                    "livenessProbe": probe,
                    "volumeMounts": [
                        {"name": "pages", "mountPath": f"{WEB_ROOT}{hub_path(cfg)}", "readOnly": True},
                        {"name": "nginx-conf", "mountPath": "/etc/nginx/conf.d", "readOnly": True},
                        {"name": "tmp", "mountPath": "/tmp"},
                    ],
                    "securityContext": container_security_context(),
                    # A CPU limit too: a static site has no burst worth taking from Prometheus' node.
                    "resources": with_cpu_limit(resources("5m", "16Mi", "32Mi"), "100m"),
                }],
                "volumes": [
                    {"name": "pages", "configMap": {"name": NAME, "items": [
                        {"key": config_map_key(p), "path": p} for p in sorted(files)]}},
                    {"name": "nginx-conf", "configMap": {"name": NAME, "items": [
                        {"key": NGINX_CONF_KEY, "path": NGINX_CONF_KEY}]}},
                    {"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}},
                ],
            },
        },
    }


def service_spec() -> dict:
    return {"selector": labels(), "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http"}]}


def ingress_annotations(cfg: StackConfig) -> dict[str, str]:
    issuer = cfg.site.runbook_hub.cert_manager
    if issuer is None:
        return {}
    # cert-manager's ingress-shim issues the tls Secret from this annotation.
    key = "cert-manager.io/cluster-issuer" if issuer.issuer_kind.value == "ClusterIssuer" else "cert-manager.io/issuer"
    return {key: issuer.issuer}


def ingress_spec(cfg: StackConfig) -> dict:
    hub = cfg.site.runbook_hub
    path = hub_path(cfg) or "/"
    spec: dict = {
        "ingressClassName": hub.ingress_class,
        "rules": [{"host": hub_host(cfg), "http": {"paths": [{
            "path": path, "pathType": "Prefix",
            "backend": {"service": {"name": NAME, "port": {"number": SERVICE_PORT}}}}]}}],
    }
    if hub.tls_secret_name:
        spec["tls"] = [{"hosts": [hub_host(cfg)], "secretName": hub.tls_secret_name}]
    return spec
