"""What the stack derives when the stack file leaves it out: names from site.domain, the report's NFS
server from the recovery NAS, the runbook hub's URL while the stack serves it; and a routing table
without a Watchdog heartbeat."""

from __future__ import annotations

from model.rules.registry import all_rules, rule_files
from model.values.metrics import static_scrape_jobs
from model.values.routing import alertmanager_config
from tests.configs import homelab_config, problems_of


def _without(section: str, *keys: str):
    def change(sections):
        for key in keys:
            sections[section].pop(key, None)
    return change


def test_grafana_url_defaults_to_grafana_under_the_site_domain():
    assert homelab_config(_without("grafana", "url")).grafana.url == "https://grafana.home.arpa"
    changed = homelab_config(lambda s: (s["grafana"].pop("url", None), s["site"].update(domain="lab.example")))
    assert changed.grafana.url == "https://grafana.lab.example"
    assert homelab_config(lambda s: s["grafana"].update(url="https://dash.home.arpa")).grafana.url == "https://dash.home.arpa"


def test_an_snmp_target_without_address_is_polled_by_its_name_under_the_site_domain():
    def change(sections):
        sections["metrics"]["snmp"]["targets"][0].pop("address", None)
        sections["metrics"]["snmp"]["targets"][1]["address"] = "192.168.30.5"

    cfg = homelab_config(change)
    targets = {t.name: t.address for t in cfg.metrics.snmp.targets}
    assert targets["core-switch"] == "core-switch.home.arpa" and targets["nas"] == "192.168.30.5"
    # What Prometheus hands the SNMP exporter as ?target=.
    job = next(j for j in static_scrape_jobs(cfg) if j.name == "snmp-core-switch")
    assert job.config["static_configs"][0]["targets"] == ["core-switch.home.arpa"]


def test_the_report_archive_defaults_to_the_recovery_nas_and_is_required_without_one():
    # The homelab's NAS writes no nfsServer: both follow the host of recovery.nas.url.
    cfg = homelab_config(lambda s: s["reports"]["archive"]["nfs"].pop("server", None))
    assert cfg.reports.archive.nfs.server == cfg.recovery.nas.nfs_server == "nas.home.arpa"

    def nas_by_address(sections):
        sections["reports"]["archive"]["nfs"].pop("server", None)
        sections["recovery"]["nas"]["nfsServer"] = "192.168.30.5"

    cfg = homelab_config(nas_by_address)
    assert cfg.reports.archive.nfs.server == cfg.recovery.nas.nfs_server == "192.168.30.5"

    def no_nas(sections):
        sections["reports"]["archive"]["nfs"].pop("server", None)
        sections["recovery"].pop("nas")
        sections["recovery"]["actions"] = {k: v for k, v in sections["recovery"]["actions"].items()
                                           if k not in ("nas-snapshot-prune", "backup-fallback")}

    assert problems_of(no_nas) == {"reports.archive.nfs.server": "is required without recovery.nas (whose nfsServer it "
                                                                 "defaults to): the NAS's host name or address"}


def test_a_served_runbook_hub_defaults_to_runbooks_under_the_site_domain():
    cfg = homelab_config(_without("site", "runbookHubUrl"))
    assert cfg.site.runbook_hub_url == "https://runbooks.home.arpa"
    urls = {r["annotations"]["runbook_url"] for r in all_rules(rule_files(cfg)) if "alert" in r}
    assert "https://runbooks.home.arpa/runbooks/BackupJobFailed.md" in urls
    assert all(u.startswith("https://runbooks.home.arpa/runbooks/") for u in urls)


def test_a_forge_cannot_be_derived():
    def forge_without_url(sections):
        sections["site"].pop("runbookHubUrl")
        sections["site"]["runbookHub"] = {"serve": False}

    assert problems_of(forge_without_url) == {
        "site.runbookHubUrl": "is required with runbookHub.serve: false: the URL of the forge that renders "
                              "runbooks/<AlertName>.md (every alert's runbook_url points there)"}


def test_the_derived_hub_url_needs_its_certificate_like_a_written_one():
    def change(sections):
        sections["site"].pop("runbookHubUrl")
        sections["site"]["runbookHub"].pop("tlsSecretName")
        sections["site"]["runbookHub"].pop("certManager")

    assert problems_of(change) == {
        "site.runbookHub.tlsSecretName": "is required to serve an https runbookHubUrl (https://runbooks.home.arpa: "
                                         "the ingress's certificate Secret); or serve: false when the URL is a forge"}


def _no_watchdog(sections):
    alerting = sections["alerting"]
    alerting.pop("watchdogReceiver")
    alerting["receivers"] = [r for r in alerting["receivers"] if "heartbeat" not in r]


def test_without_a_watchdog_receiver_there_is_no_watchdog_and_the_preview_says_so():
    cfg = homelab_config(_no_watchdog)
    assert "Watchdog" not in {r.get("alert") for r in all_rules(rule_files(cfg))}
    routes = alertmanager_config(cfg)["route"]["routes"]
    assert not [r for r in routes if any("Watchdog" in m for m in r.get("matchers", []))]
    assert ("alerting.watchdogReceiver: off (not set): no Watchdog alert and no heartbeat: nothing outside the stack "
            "notices when Prometheus or Alertmanager stop sending alerts") in cfg.parts_off()
    # With one: the Watchdog, its route first, and no off line.
    cfg = homelab_config()
    assert "Watchdog" in {r.get("alert") for r in all_rules(rule_files(cfg))}
    assert alertmanager_config(cfg)["route"]["routes"][0]["receiver"] == "watchdog-heartbeat"
    assert not [line for line in cfg.parts_off() if line.startswith("alerting.")]


def test_a_named_watchdog_receiver_must_still_exist_and_be_a_heartbeat():
    problems = problems_of(lambda s: s["alerting"].update(watchdogReceiver="pagerduty-primary"))
    assert problems == {"alerting.watchdogReceiver": "must be a heartbeat receiver: the Watchdog must never page"}
    problems = problems_of(lambda s: s["alerting"].update(watchdogReceiver="watchdog-hartbeat"))
    assert problems["alerting.watchdogReceiver"].startswith("unknown receiver 'watchdog-hartbeat'")
