"""The one typed schema of a stack's configuration, one module per section.

Pulumi hands the program a flat map of `<project>:<key>` values; each top-level key is one
section (site.py, inventory.py, logs.py, ... ; stack.py puts them together). Keys are written
in camelCase in Pulumi.<stack>.yaml and every problem is reported by the key path the user
wrote (`hosts.pbs.memoryMb: must be >= 2048`), all of them at once, before any resource exists
(loading.py).

Secrets never live in these models: model/facts/secrets.py names each secret key and what it is for;
the program reads them as Pulumi secrets and `required_secrets` says which ones a stack needs.

Callers import from here; the modules below are where a section is read and changed.
"""

from model.config.alerting import Alerting, HeartbeatReceiver, MattermostReceiver, PagerDutyReceiver, Receiver, Route
from model.config.base import ConfigError, ConfigModel, Problem
from model.config.exporters import PbsExporter, PveExporter
from model.config.fields import (CertManagerIssuer, GoDuration, IssuerKind, ObjectStorage, PromDuration, Retention,
                                 duration_hours, duration_seconds)
from model.config.grafana import Grafana, GrafanaDataSourceUrls, GrafanaTls
from model.config.inventory import Access, CloudImage, Host, K3s, Network, Proxmox, PublicKeys, Role
from model.config.loading import load_stack_config
from model.config.logs import (LogSources, Logs, LogsMode, LokiBuckets, LokiObjectStorage, LokiRetention, LokiTenant,
                               NamespaceRetention, SyslogSource)
from model.config.metrics import (AlertmanagerSettings, FederationSource, LongTermMetrics, LongTermStorage, Metrics,
                                  PrometheusSettings, RemoteWriteQueue, Snmp, SnmpTarget, long_term_days)
from model.config.probes import Probes, ProbeTarget
from model.config.recovery import RECOVERY_RECEIVER, Recovery, RecoveryAction, RecoveryNas, RecoveryPve
from model.config.reports import NfsShare, ReportArchive, Reports
from model.config.restore_drills import RestoreDrills
from model.config.site import RunbookHub, Site
from model.config.slos import LatencySli, Sli, Slo
from model.config.stack import StackConfig, required_secrets
from model.config.traces import SpanMetrics, TempoObjectStorage, Traces, TracesMode

__all__ = [
    "Access", "Alerting", "AlertmanagerSettings", "CertManagerIssuer", "CloudImage", "ConfigError", "ConfigModel",
    "FederationSource", "GoDuration", "Grafana", "GrafanaDataSourceUrls", "GrafanaTls", "HeartbeatReceiver", "Host",
    "IssuerKind", "K3s", "LatencySli", "LogSources", "Logs", "LogsMode", "LokiBuckets", "LokiObjectStorage",
    "LokiRetention", "LokiTenant", "LongTermMetrics", "LongTermStorage", "MattermostReceiver", "Metrics",
    "NamespaceRetention", "Network", "NfsShare", "ObjectStorage", "PagerDutyReceiver", "PbsExporter", "PrometheusSettings",
    "Probes", "ProbeTarget", "Problem", "PromDuration", "Proxmox", "PublicKeys", "PveExporter", "RECOVERY_RECEIVER",
    "Receiver", "Recovery", "RecoveryAction", "RecoveryNas", "RecoveryPve", "RemoteWriteQueue", "ReportArchive", "Reports", "RestoreDrills",
    "Retention", "Role", "Route", "RunbookHub", "Site", "Sli", "Slo", "Snmp", "SnmpTarget", "SpanMetrics", "StackConfig",
    "SyslogSource", "TempoObjectStorage", "Traces", "TracesMode", "duration_hours", "duration_seconds", "load_stack_config",
    "long_term_days", "required_secrets",
]
