"""The recovery service as a real process among fake PBS, PVE and TrueNAS APIs and a capture
server, all on 127.0.0.1, with time compressed through its config (seconds, not hours)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from tests.capture_server import Capture
from tests.fake_pbs import TOKEN as PBS_READ_TOKEN
from tests.fake_pbs import FakePBS
from tests.fake_pve import BACKUP_TOKEN, DRILL_TOKEN, READ_TOKEN, FakePVE
from tests.fake_truenas import API_KEY, FakeTrueNAS

ROOT = Path(__file__).resolve().parent.parent
WEBHOOK_TOKEN = "webhook-bearer-token-4c1d"
PBS_ACTION_TOKENS = {kind: f"recovery@pbs!{kind}:{kind}-secret-0000" for kind in ("sync", "verify", "prune", "gc")}
PD_ROUTE_KEY = '{}/{severity="critical"}'
DRILL_ACTION = "restore-drill-run"
SCRATCH = (9900, 9901)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def alert(name: str, labels: dict, *, status: str = "firing", starts_at: str = "2026-12-01T10:00:00Z",
          fingerprint: str | None = None) -> dict:
    labels = {"alertname": name, **labels}
    return {"status": status, "labels": labels, "annotations": {"summary": name},
            "startsAt": starts_at, "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-12-01T11:00:00Z",
            "generatorURL": "http://prometheus/graph", "fingerprint": fingerprint or hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]}


def notification(*alerts: dict, group_key: str = '{}/{service="backups"}:{alertname="X"}', truncated: int = 0) -> dict:
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    common = {k: v for k, v in alerts[0]["labels"].items() if all(a["labels"].get(k) == v for a in alerts)}
    return {"version": "4", "groupKey": group_key, "truncatedAlerts": truncated, "status": status, "receiver": "recovery",
            "groupLabels": {"service": common.get("service", "")}, "commonLabels": common, "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093", "alerts": list(alerts)}


class World:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.pbs = FakePBS(node="pbs")
        self.pbs.tokens = {token: token.split(":")[0] for token in PBS_ACTION_TOKENS.values()}
        self.pve = FakePVE()
        self.nas = FakeTrueNAS()
        self.capture = Capture()
        self.proc = None
        self.port = free_port()
        self.log_path = tmp / "service.log"
        self.config_path = tmp / "recovery.yml"
        self.audit_path = tmp / "audit.jsonl"
        self.kill_switch = tmp / "disabled"

    def start_fakes(self, truenas: bool = False):
        self.pbs.start()
        self.pve.start()
        self.capture.start()
        if truenas:
            self.nas.start()

    def secret(self, name: str, value: str) -> str:
        path = self.tmp / "secrets" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(value + "\n")
        path.chmod(0o600)
        return str(path)

    def config(self, **overrides) -> dict:
        secrets = {kind: self.secret(f"pbs-{kind}", token) for kind, token in PBS_ACTION_TOKENS.items()}
        doc = {
            "listen": f"127.0.0.1:{self.port}",
            "webhookTokenFile": self.secret("webhook", WEBHOOK_TOKEN),
            "stateFile": str(self.tmp / "state.sqlite3"),
            "auditLog": str(self.audit_path),
            "killSwitchFile": str(self.kill_switch),
            "workers": 2,
            "requestTimeoutSeconds": 1,
            "pollSeconds": 0.05,
            "verifyTimeoutSeconds": 20,
            "deferSeconds": 0.2,
            "logLines": 5,
            "actions": {
                "pbs-job-rerun": {"mode": "enforce", "cooldownSeconds": 30, "maxAttempts": 2, "windowSeconds": 60},
                "pve-backup-rerun": {"mode": "enforce", "cooldownSeconds": 30, "maxAttempts": 2, "windowSeconds": 60},
                "backup-fallback": {"mode": "enforce", "cooldownSeconds": 0, "maxAttempts": 1, "windowSeconds": 60},
                "loki-compactor-report": {"mode": "enforce"},
                "nas-snapshot-prune": {"mode": "dry-run", "cooldownSeconds": 0, "maxAttempts": 3, "windowSeconds": 60},
            },
            "triggers": [
                {"alertname": "BackupJobFailed", "playbook": "backup-failure"},
                {"alertname": "BackupMaintenanceJobFailed", "playbook": "backup-failure"},
                {"alertname": "NasStorageUsageHigh", "playbook": "disk-usage"},
                {"alertname": "PersistentVolumeUsageHigh", "matchers": {"persistentvolumeclaim": "storage-loki-0"},
                 "playbook": "disk-usage"},
            ],
            "pbs": {"url": self.pbs.url, "uiUrl": "https://pbs.home.arpa:8007", "readTokenFile": self.secret("pbs-read", PBS_READ_TOKEN),
                    "tokenFiles": secrets},
            "pve": {"url": self.pve.url, "uiUrl": "https://pve1.home.arpa:8006", "readTokenFile": self.secret("pve-read", READ_TOKEN),
                    "backupTokenFile": self.secret("pve-backup", BACKUP_TOKEN)},
            "mattermost": {"webhookUrlFile": self.secret("mattermost", f"{self.capture.url}/hooks/backups-room"),
                           "channels": {"backup-failure": "backups", "disk-usage": "ops"}},
            "pagerduty": {"url": f"{self.capture.url}/v2/enqueue", "routingKeyFile": self.secret("pagerduty", "pd-key-0001"),
                          "routeKey": PD_ROUTE_KEY, "groupBy": ["service"], "matchers": {"severity": "critical"}},
        }
        for action, section in (("backup-fallback", "fallback"), ("loki-compactor-report", "prometheus"),
                                ("nas-snapshot-prune", "truenas")):
            if section not in overrides and not (section == "truenas" and self.nas.port):
                doc["actions"][action] = {"mode": "off"}
        if self.nas.port:
            doc["truenas"] = {"url": self.nas.url, "apiKeyFile": self.secret("truenas", API_KEY),
                              "dataset": "tank/observability/logs", "retentionDays": 21, "keepNewest": 2}
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(doc.get(key), dict):
                doc[key] = {**doc[key], **value}
            else:
                doc[key] = value
        return doc

    def write_config(self, **overrides) -> Path:
        self.config_path.write_text(yaml.safe_dump(self.config(**overrides), sort_keys=False))
        return self.config_path

    def start(self, **overrides):
        if not self.config_path.exists() or overrides:
            self.write_config(**overrides)
        handle = open(self.log_path, "a")
        self.proc = subprocess.Popen([sys.executable, "-m", "services.recovery", "serve", "--config", str(self.config_path)],
                                     cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        handle.close()
        wait_for(self.healthy, 10, "the service to answer /healthz")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as response:
                return response.status == 200
        except OSError:
            if self.proc and self.proc.poll() is not None:
                raise AssertionError(f"the service exited with {self.proc.returncode}:\n{self.log()}")
            return False

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for fake in (self.pbs, self.pve, self.capture, self.nas):
            fake.stop()

    def send(self, document: dict, token: str = WEBHOOK_TOKEN, raw: bytes | None = None) -> tuple[int, dict]:
        body = raw if raw is not None else json.dumps(document).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/webhook", data=body, method="POST",
                                         headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as response:
            return response.read().decode()

    def metric(self, name: str, **labels) -> float | None:
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in self.metrics().splitlines():
            if line.startswith("#"):
                continue
            series, _, value = line.rpartition(" ")
            metric_name, _, rest = series.partition("{")
            if metric_name == name and ",".join(sorted(rest.rstrip("}").split(","))) == wanted:
                return float(value)
        return None

    def audit(self) -> list[dict]:
        if not self.audit_path.exists():
            return []
        return [json.loads(line) for line in self.audit_path.read_text().splitlines() if line.strip()]

    def decisions(self, decision: str, **match) -> list[dict]:
        return [a for a in self.audit() if a["decision"] == decision and all(a.get(k) == v for k, v in match.items())]

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def chat_texts(self) -> list[str]:
        return [post["text"] for post in self.capture.chat()]

    # --- restore drills (tests/services/test_restore_drills.py, benchmarks/bench_restore_drill.py)
    def stage_restore_drills(self, now: float, newest: float) -> None:
        """Guests 101 (qemu, tier-1) and 105 (lxc), each with two snapshots on PBS (the newest at ``newest``), a
        scratch storage with 50 GiB free, and the fake PVE's guard: nothing state-changing outside SCRATCH."""
        self.pve.add_guest(101, "pve1", tags="tier-1;web")
        self.pve.add_guest(105, "pve1", kind="lxc", tags="tier-2")
        self.pve.add_pbs_storage("pbs-homelab", "homelab")
        self.pve.add_storage("local-lvm", "pve1", 100 * 2**30, 50 * 2**30)
        self.pve.scratch = SCRATCH
        self.pbs.add_datastore("homelab", 8 * 2**40, 2**40)
        for guest in (("vm", "101"), ("ct", "105")):
            self.pbs.add_snapshot("homelab", *guest, now - 86400)
            self.pbs.add_snapshot("homelab", *guest, newest)

    def start_drills(self, mode: str = "enforce", **drills) -> None:
        """The service with restore drills of guest 101 (unless ``drills`` says otherwise), checked every 0.1s."""
        self.start(actions={DRILL_ACTION: {"mode": mode, "cooldownSeconds": 0, "maxAttempts": 5, "windowSeconds": 60}},
                   pve={**self.config()["pve"], "drillTokenFile": self.secret("pve-drill", DRILL_TOKEN)},
                   restoreDrills={"guests": [101], "intervals": {"tier-1": 3600, "default": 7200},
                                  "vmidRange": {"first": SCRATCH[0], "last": SCRATCH[1]}, "storage": "local-lvm",
                                  "pbsStorage": "pbs-homelab", "pool": "restore-drills", "checkSeconds": 0.1,
                                  "maxDurationSeconds": 20, "agentTimeoutSeconds": 1.5, **drills})

    def drill_outcome(self, timeout: float = 15) -> dict:
        """The audit line of the drill's outcome (passed, failed, interrupted)."""
        return wait_for(lambda: next((a for a in self.decisions("verify", action=DRILL_ACTION) if "restore drill" in a["why"]),
                                     None), timeout, "the drill's outcome")
