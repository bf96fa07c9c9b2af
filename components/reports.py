"""The quarterly PBS job report, made by a CronJob beside Prometheus (see model/reports.py for why)."""

from __future__ import annotations

import pulumi

from components.kubernetes_objects import ConfigMap, CronJob, PersistentVolumeClaim
from model import reports
from model.config import StackConfig


class PbsReports(pulumi.ComponentResource):
    def __init__(self, name: str, config: StackConfig, stack: str, depends_on: list[pulumi.Resource],
                 opts: pulumi.ResourceOptions | None = None):
        """`depends_on`: what creates the metrics namespace and the Secret holding the webhook URL."""
        super().__init__("homelab:backups:PbsReports", name, None, opts)
        assert config.reports is not None
        namespace = config.metrics.namespace
        metadata = {"name": reports.NAME, "namespace": namespace, "labels": {"app.kubernetes.io/name": reports.NAME}}
        code = ConfigMap(reports.NAME, metadata=metadata, data=reports.config_map_data(config, stack),
                         opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on))
        needs = [code, *depends_on]
        if claim := reports.archive_claim_spec(config):
            # The archived reports: protected and kept, like every volume holding data.
            needs.append(PersistentVolumeClaim(reports.NAME, metadata=metadata, spec=claim, opts=pulumi.ResourceOptions(
                parent=self, depends_on=depends_on, protect=True, retain_on_delete=True)))
        CronJob(reports.NAME, metadata=metadata, spec=reports.cron_job_spec(config),
                opts=pulumi.ResourceOptions(parent=self, depends_on=needs))
        self.schedule = f"{reports.schedule(config)} ({config.site.timezone})"
        self.archive = reports.archive_location(config)
        self.register_outputs({"schedule": self.schedule, "archive": self.archive})
