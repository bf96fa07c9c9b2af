"""contracts/ against the parts that speak the names: the PBS job exporter's exposition, the recovery
service's metrics, playbooks and config schema, the rendered rules and the runbooks."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from contracts import alerts, metrics
from contracts import recovery as catalog
from services.recovery import config as service_config
from services.recovery.audit import Metrics
from services.recovery.playbooks import PLAYBOOKS
from tests.services.test_pbs_exporter import exporters, fake, seed  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[2]
PBS_NAMES = {v for k, v in vars(metrics).items() if k.startswith("PBS_") and isinstance(v, str)}
PBS_JOB_METRICS = {v for k, v in vars(metrics).items() if k.startswith("PBS_JOB_") and isinstance(v, str)}


def test_the_pbs_exporter_exposes_every_name_the_others_read(fake, exporters, tmp_path):  # noqa: F811
    seed(fake)
    scrape = exporters(tmp_path, fake.url).start().wait_metric("pbs_up", {}, 1)
    families = {family.name for family in text_string_to_metric_families(scrape.text)}  # a histogram's name
    exposed = {name for name, _ in scrape.samples} | families
    assert PBS_NAMES <= exposed, PBS_NAMES - exposed
    for name in PBS_JOB_METRICS:
        assert all(set(metrics.PBS_JOB_LABELS) <= {k for k, _ in labels} for labels in scrape.series(name)), name


def test_the_recovery_service_exposes_the_names_its_rules_read():
    registry = Metrics()
    registry.gave_up.labels(*("x" for _ in metrics.GAVE_UP_LABELS)).set(1)
    samples = {s.name: s.labels for f in text_string_to_metric_families(generate_latest(registry.registry).decode())
               for s in f.samples}
    for name in (metrics.ACTIONS_METRIC, metrics.EXHAUSTED_METRIC, metrics.LIMIT_REACHED_METRIC, metrics.GAVE_UP_METRIC):
        assert name in samples, name
    assert set(samples[metrics.GAVE_UP_METRIC]) == set(metrics.GAVE_UP_LABELS)
    assert {labels["action"] for name, labels in samples.items() if name == metrics.ACTIONS_METRIC} <= set(catalog.ACTIONS)


def test_the_service_carries_out_every_playbook_of_the_catalog_and_no_other():
    assert set(PLAYBOOKS) == set(catalog.PLAYBOOKS)
    assert {a.playbook for a in catalog.ACTIONS.values()} == set(catalog.PLAYBOOKS)


def test_every_section_the_catalog_names_is_in_the_service_config_schema():
    sections = service_config.SCHEMA["properties"]
    named = {a.section for a in catalog.ACTIONS.values()} | {s for p in catalog.PLAYBOOKS.values() for s in p.needs}
    named |= {a.enforce_needs.split(".")[0] for a in catalog.ACTIONS.values() if a.enforce_needs}
    assert named <= set(sections), named - set(sections)
    for action in catalog.ACTIONS.values():
        if action.enforce_needs:
            section, key = action.enforce_needs.split(".")
            assert key in sections[section]["properties"], action.enforce_needs
    assert set(catalog.SECTION_DEFAULTS) <= set(sections)
    assert set(catalog.DEFAULTS) <= set(sections)


def test_every_trigger_alert_is_in_the_alert_catalog():
    for playbook in catalog.PLAYBOOKS.values():
        assert set(playbook.alerts) <= set(alerts.ALL), playbook.name


def test_the_rendered_rules_name_only_catalog_alerts_with_their_services(homelab):
    rendered: dict[str, set[str]] = {}
    for path in homelab.rule_files:
        if path.name == "slos.yaml":  # named after each SLO of the stack config
            continue
        for group in homelab.yaml(f"prometheus/rules/{path.name}")["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    rendered.setdefault(rule["alert"], set()).add(rule["labels"]["service"])
    assert set(rendered) <= set(alerts.ALL), set(rendered) - set(alerts.ALL)
    for name, services in rendered.items():
        expected = alerts.ALL[name].service
        assert services == {expected} if expected else all(s.startswith("{{") for s in services), name


def test_every_catalog_alert_has_its_runbook():
    missing = [name for name in alerts.ALL if not (ROOT / "runbooks" / f"{name}.md").is_file()]
    assert not missing
