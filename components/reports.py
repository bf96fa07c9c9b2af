"""The quarterly PBS job report, made by a CronJob beside Prometheus (see model/reports.py for why)."""

from __future__ import annotations

import pulumi

from components.kubernetes_objects import ConfigMap, CronJob
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
        CronJob(reports.NAME, metadata=metadata, spec=reports.cron_job_spec(config),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[code, *depends_on]))
        nfs = config.reports.archive.nfs
        self.schedule = f"{reports.schedule(config)} ({config.site.timezone})"
        self.archive = f"{nfs.server}:{nfs.path}"
        self.register_outputs({"schedule": self.schedule, "archive": self.archive})
