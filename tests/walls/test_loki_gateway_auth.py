"""Tenants need credentials: Debian's nginx runs the gateway configuration the Loki chart renders
for the stack (`helm template`), with the htpasswd file model/values/logs.py writes, in front of
a real Loki on the rendered config (tools/logs_traces_local.py lists every local change)."""

from __future__ import annotations

import base64
import json
import time
import urllib.parse
import uuid

import pytest

from model.values import logs
from tests import logs_traces_world as world
from tools import logs_traces_local as local

PASSWORDS = world.TENANT_PASSWORDS


@pytest.fixture(scope="module")
def loki(homelab, tmp_path_factory):
    release = world.rendered_release(homelab, local.LOKI_RELEASE)
    server = world.Loki(release, tmp_path_factory.mktemp("loki"))
    gateway = world.Gateway(release, tmp_path_factory.mktemp("gateway"), server)
    try:  # started inside: a gateway that fails to start leaves no Loki behind
        server.start()
        gateway.start()
        yield server, gateway.url
    finally:
        gateway.stop()
        server.stop()


def _headers(user: str | None = None, password: str | None = None, tenant: str | None = None) -> dict:
    headers = {"Content-Type": "application/json"}
    if user is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    if tenant is not None:
        headers[logs.TENANT_HEADER] = tenant
    return headers


def _push(url: str, line: str, **login) -> world.Reply:
    body = json.dumps({"streams": [world.stream({"service_name": "walls"}, [line])]}).encode()
    return world.http("POST", f"{url}/loki/api/v1/push", body, _headers(**login))


def _query(url: str, logql: str, **login) -> world.Reply:
    now = time.time()
    return world.http("GET", f"{url}/loki/api/v1/query_range?query={urllib.parse.quote(logql)}"
                             f"&start={int((now - 600) * 1e9)}&end={int((now + 60) * 1e9)}", headers=_headers(**login))


def _stored(server: world.Loki, tenant: str, run: str) -> list[str]:
    return server.lines(tenant, f'{{service_name="walls"}} |= "{run}"')


def test_no_credential_and_a_wrong_password_are_refused_and_store_nothing(loki):
    server, url = loki
    run = uuid.uuid4().hex[:12]
    assert _push(url, f"{run} anonymous", tenant="homelab").status == 401
    assert _push(url, f"{run} wrong", user="homelab", password=PASSWORDS["nas"]).status == 401
    assert _push(url, f"{run} stranger", user="nobody", password="nothing", tenant="homelab").status == 401
    assert _query(url, '{service_name=~".+"}', tenant="homelab").status == 401
    assert _query(url, '{service_name=~".+"}', user="nas", password="guess").status == 401
    time.sleep(2)
    assert _stored(server, "homelab", run) == [] and _stored(server, "nas", run) == []


def test_a_tenants_credential_with_another_tenants_header_reaches_its_own_data_only(loki):
    server, url = loki
    run = uuid.uuid4().hex[:12]
    # Tenant nas's credential claiming homelab's header writes into nas.
    assert _push(url, f"{run} pushed by nas", user="nas", password=PASSWORDS["nas"], tenant="homelab").status == 204
    assert _push(url, f"{run} pushed by homelab", user="homelab", password=PASSWORDS["homelab"]).status == 204
    world.wait_until(lambda: _stored(server, "nas", run) and _stored(server, "homelab", run), 30, "both lines stored")
    assert _stored(server, "nas", run) == [f"{run} pushed by nas"]
    assert _stored(server, "homelab", run) == [f"{run} pushed by homelab"]
    # Reading through the gateway: homelab's credential with nas's header sees homelab's line only.
    reply = _query(url, f'{{service_name="walls"}} |= "{run}"', user="homelab", password=PASSWORDS["homelab"],
                   tenant="nas")
    assert reply.status == 200, reply.body
    assert [v[1] for s in reply.json()["data"]["result"] for v in s["values"]] == [f"{run} pushed by homelab"]


def test_the_health_answer_needs_no_credential(loki):
    _, url = loki
    assert world.http("GET", f"{url}/").status == 200


def test_htpasswd_lines_are_per_tenant_salted_and_stable():
    first, again = logs.htpasswd(PASSWORDS), logs.htpasswd(dict(reversed(PASSWORDS.items())))
    assert first == again
    lines = first.splitlines()
    assert [line.split(":")[0] for line in lines] == ["homelab", "nas"]
    assert all(line.split(":", 1)[1].startswith("{SSHA}") for line in lines)
    assert not any(password in first for password in PASSWORDS.values())
    with pytest.raises(ValueError, match="htpasswd"):
        logs.htpasswd({"a:b": "x"})
