"""The recovery service in the drill's loop (tools/drill/recovery_loop.py), end to end in `make test`:
the real service, Prometheus and Alertmanager on 127.0.0.1, the rendered configuration."""

import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_a_failure_the_services_rerun_fixes_pages_nobody(tmp_path, homelab):
    keep = tmp_path / "keep"
    result = subprocess.run([sys.executable, "-m", "tools.drill", "--input", str(homelab.out), "--scenario",
                             "backup-retried-by-automation", "--out", str(tmp_path), "--quiet", "--keep", str(keep)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (scenario,) = json.loads((tmp_path / "results.json").read_text())["scenarios"]
    assert scenario["verdict"] == "pass" and scenario["incidents_opened"] == 0
    (action,) = scenario["recovery_actions"]
    assert (action["action"], action["target"], action["result"]) == ("pve-backup-rerun", "pve-job/backup-nightly", "ok")  # counted per PVE job
    assert 5 * 60 < action["at_s"] < 15 * 60  # after the failure at 5m and the 5m vzdump, well within the grace
    # The room heard the warning from Alertmanager and its recovery, and the service's re-run.
    room = [(n["alertname"], n["status"]) for n in scenario["notifications"] if n["receiver"] == "mattermost-backup-room"]
    assert room == [("BackupJobFailed", "firing"), ("BackupJobFailed", "resolved")]
    sent = [json.loads(line) for line in (keep / "backup-retried-by-automation" / "notifications.jsonl").read_text().splitlines()]
    posts = [c["body"]["text"] for c in sent if c["receiver"] == "recovery-service-chat"]
    assert any("vm/101 on datastore homelab: failed → re-run → OK" in p for p in posts)
    # The rendered config, its endpoints re-pointed at 127.0.0.1 and its guards compressed ×120.
    ran = yaml.safe_load((keep / "backup-retried-by-automation" / "recovery" / "recovery.yml").read_text())
    rendered = yaml.safe_load((homelab.out / "recovery" / "recovery.yml").read_text())
    assert ran["triggers"] == rendered["triggers"] and ran["pagerduty"]["routeKey"] == rendered["pagerduty"]["routeKey"]
    assert ran["pve"]["url"].startswith("http://127.0.0.1:") and ran["pbs"]["url"].startswith("http://127.0.0.1:")
    assert ran["actions"]["pve-backup-rerun"]["cooldownSeconds"] == rendered["actions"]["pve-backup-rerun"]["cooldownSeconds"] / 120
