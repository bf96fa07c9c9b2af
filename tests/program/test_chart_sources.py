"""Where `make manifests` takes a chart from: the chart mirror, else a verified `helm pull`.

The pull is real: Helm fetches from a chart repository served on 127.0.0.1 (a chart of the
mirror packaged by `helm package`, indexed by `helm repo index`), so the digest check judges the
archive Helm actually brought.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import subprocess
import threading

import pytest

from tests.shared_data import CHARTS
from tools import manifests

CHART, VERSION = "prometheus-blackbox-exporter", "11.17.2"


@pytest.fixture(scope="module")
def chart_repository(tmp_path_factory):
    """A chart repository on 127.0.0.1 serving one chart of the mirror: (url, archive sha256)."""
    root = tmp_path_factory.mktemp("repository")
    helm = manifests.helm_binary()
    subprocess.run([helm, "package", str(CHARTS / f"{CHART}-{VERSION}"), "--destination", str(root)],
                   check=True, capture_output=True)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root)))
    url = f"http://127.0.0.1:{server.server_port}"
    subprocess.run([helm, "repo", "index", str(root), "--url", url], check=True, capture_output=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield url, hashlib.sha256((root / f"{CHART}-{VERSION}.tgz").read_bytes()).hexdigest()
    server.shutdown()


@pytest.fixture
def pins(tmp_path, monkeypatch):
    """vendor/charts.json replaced by a file the test writes."""
    path = tmp_path / "charts.json"
    monkeypatch.setattr(manifests, "CHART_DIGESTS", path)
    monkeypatch.setattr(manifests, "ROOT", tmp_path)
    monkeypatch.setattr(manifests, "PULLED_CHARTS", tmp_path / "pulled")
    return lambda digests: path.write_text(json.dumps(digests))


def _release(repository: str) -> manifests.Release:
    return manifests.Release.of("blackbox", CHART, VERSION, repository, "monitoring", {})


def test_a_pulled_chart_with_the_pinned_digest_is_rendered(chart_repository, pins, tmp_path):
    url, digest = chart_repository
    pins({f"{CHART}-{VERSION}.tgz": digest})
    archive = manifests.pulled_chart(_release(url), tmp_path / "cache")
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == digest
    rendered = manifests.render(_release(url), None, fetch=True)
    assert rendered.chart_source == f"{url} (helm pull, sha256 verified)"
    assert {m.kind for m in rendered.manifests} >= {"Deployment", "Service"}


def test_a_pulled_chart_with_another_digest_is_refused(chart_repository, pins, tmp_path):
    url, digest = chart_repository
    pins({f"{CHART}-{VERSION}.tgz": "0" * 64})
    with pytest.raises(manifests.ChartUnavailable, match=rf"is not the archive pinned in charts.json \(sha256 {digest}"):
        manifests.pulled_chart(_release(url), tmp_path / "cache")
    assert not (tmp_path / "cache" / f"{CHART}-{VERSION}.tgz").exists()


def test_a_chart_without_a_pinned_digest_is_not_pulled(pins, tmp_path):
    pins({})
    with pytest.raises(manifests.ChartUnavailable, match=r"has no digest pinned in charts.json .*CHART_MIRROR"):
        manifests.pulled_chart(_release("http://127.0.0.1:9"), tmp_path / "cache")


def test_an_unreachable_repository_is_one_line_naming_the_chart_and_the_way_out(pins, tmp_path):
    pins({f"{CHART}-{VERSION}.tgz": "0" * 64})
    with pytest.raises(manifests.ChartUnavailable) as error:
        manifests.pulled_chart(_release("http://127.0.0.1:9"), tmp_path / "cache")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"chart {CHART} {VERSION} is in no chart mirror and `helm pull` from http://127.0.0.1:9 failed (")
    assert message.endswith(f"set CHART_MIRROR to a directory holding {CHART}-{VERSION}/, or let this machine reach "
                            "the repository")


def test_make_manifests_without_a_mirror_exits_2_with_that_line(pins, tmp_path, capsys):
    pins({f"{CHART}-{VERSION}.tgz": "0" * 64})
    build = tmp_path / "build"
    (build / "lab").mkdir(parents=True)
    (build / "lab" / "resources.json").write_text(json.dumps({"resources": [{
        "type": manifests.HELM_RELEASE_TYPE, "name": "blackbox", "inputs": {
            "name": "blackbox", "chart": CHART, "version": VERSION, "namespace": "monitoring",
            "repositoryOpts": {"repo": "http://127.0.0.1:9"}, "values": {}}}]}))
    empty_mirror = tmp_path / "mirror"
    empty_mirror.mkdir()
    status = manifests.main(["--stack", "lab", "--build", str(build), "--charts", str(empty_mirror)])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and err.startswith(f"error: chart {CHART} {VERSION} is in no chart mirror")


def test_every_chart_the_stack_installs_is_pinned_or_a_known_gap():
    from model import helm

    installed = {f"{c.name}-{c.version}.tgz" for c in vars(helm).values() if isinstance(c, helm.HelmChart)}
    pinned = set(json.loads(manifests.CHART_DIGESTS.read_text()))
    assert pinned <= installed, "a pin for a chart the stack no longer installs"
    # Their repository's index.yaml was not readable here; until pinned, only a mirror renders them.
    assert installed - pinned == {"prometheus-snmp-exporter-9.17.1.tgz", "prometheus-blackbox-exporter-11.17.2.tgz"}
