"""``python -m recovery serve --config <file>`` runs the service;
``python -m recovery plan --config <file> --alert <webhook.json>`` prints what it would do with a
notification, touching nothing: no API call, no post, no write (the state file is opened read-only).

A start-up mistake (bad config, unreadable token file, port in use) exits with status 2 and one
line ``recovery: error: ...``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sqlite3
import sys
import threading
import time

from contracts.recovery import steps

from .audit import Audit, Metrics
from .config import Config, ConfigError
from .drills import Scheduler
from .engine import Engine, parse_payload
from .errors import PayloadError
from .playbooks import PLAYBOOKS
from .rest import read_secret
from .server import make_server
from .state import State

log = logging.getLogger("recovery")


def fail(message: str) -> int:
    print(f"recovery: error: {message}", file=sys.stderr)
    return 2


def serve(cfg: Config) -> int:
    try:
        token = read_secret(cfg["webhookTokenFile"])
    except ValueError as exc:
        return fail(str(exc))
    try:
        state = State(cfg["stateFile"])
    except sqlite3.Error as exc:
        return fail(f"state file {cfg['stateFile']}: {exc}")
    metrics = Metrics()
    engine = Engine(cfg, state, Audit(cfg.get("auditLog")), metrics, PLAYBOOKS)
    try:
        server = make_server(engine, cfg["listen"], token, cfg.get("tlsCertFile"), cfg.get("tlsKeyFile"))
    except OSError as exc:
        return fail(f"cannot listen on {cfg['listen']}: {exc.strerror or exc}")
    resumed = state.requeue_interrupted()
    log.info("recovery service listening on %s (%d occurrence(s) resumed, kill switch %s)", cfg["listen"], resumed,
             "ENGAGED" if engine.kill_switch() else "off")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threading.Thread(target=server.serve_forever, args=(0.2,), daemon=True).start()
    workers = [threading.Thread(target=engine.worker, daemon=True, name=f"worker-{i}") for i in range(cfg["workers"])]
    if "restoreDrills" in cfg.doc:
        workers.append(threading.Thread(target=Scheduler(engine).run, daemon=True, name="restore-drills"))
    for worker in workers:
        worker.start()
    stop.wait()
    log.info("stopping: unfinished playbooks continue at the next start")
    engine.stopping.set()
    engine.wakeup.set()
    server.shutdown()
    for worker in workers:
        worker.join(timeout=5)
    state.close()
    return 0


def plan(cfg: Config, alert_file: str) -> int:
    try:
        with open(alert_file, encoding="utf-8") as handle:
            document = json.load(handle)
        alerts = parse_payload(document)
    except (OSError, ValueError, PayloadError) as exc:
        return fail(f"{alert_file}: {exc}")
    db = None
    if os.path.exists(cfg["stateFile"]):
        db = sqlite3.connect(f"file:{cfg['stateFile']}?mode=ro", uri=True)
    kill = not cfg["enabled"] or os.path.exists(cfg["killSwitchFile"])
    print(f"kill switch: {'ENGAGED: nothing would be done' if kill else 'off'}")
    if document.get("truncatedAlerts"):
        print(f"warning: Alertmanager left {document['truncatedAlerts']} alert(s) out of this notification")
    for alert in alerts:
        labels = alert["labels"]
        name = labels.get("alertname", "?")
        trigger = cfg.trigger_for(labels)
        head = f"{name} {json.dumps({k: v for k, v in sorted(labels.items()) if k != 'alertname'})}"
        if alert["status"] != "firing":
            print(f"- {head}: ignored (status {alert['status']}: never act on a resolved alert)")
            continue
        if trigger is None:
            print(f"- {head}: ignored (not in the trigger table)")
            continue
        seen = db and db.execute("SELECT status FROM occurrences WHERE fingerprint = ? AND starts_at = ?",
                                 (alert["fingerprint"], alert["startsAt"])).fetchone()
        if seen:
            print(f"- {head}: duplicate (occurrence already received, {seen[0]})")
            continue
        print(f"- {head}: playbook {trigger.playbook}")
        for step in steps(trigger.playbook):
            action, what = step.name, step.step
            mode = "off" if kill else cfg.action(action)["mode"]
            settings = cfg.action(action)
            print(f"    {action} [{mode}]: {what}")
            if mode != "off":
                print(f"      guards: cooldown {settings['cooldownSeconds']:g}s, at most {settings['maxAttempts']} "
                      f"per {settings['windowSeconds']:g}s, one action at a time per node")
                if db:
                    count = db.execute("SELECT count(*) FROM attempts WHERE action = ? AND started_at >= ? AND"
                                       " (result IS NULL OR result NOT IN ('dry-run', 'skipped'))",
                                       (action, time.time() - settings["windowSeconds"])).fetchone()[0]
                    print(f"      attempts of {action} within the window (all targets): {count}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recovery", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve_cmd = sub.add_parser("serve", help="run the service")
    serve_cmd.add_argument("--config", required=True)
    serve_cmd.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    plan_cmd = sub.add_parser("plan", help="print what the service would do with a notification")
    plan_cmd.add_argument("--config", required=True)
    plan_cmd.add_argument("--alert", required=True, help="an Alertmanager webhook body (JSON)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(args, "log_level", "warning").upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(threadName)s %(message)s")
    try:
        cfg = Config.load(args.config)
    except ConfigError as exc:
        return fail(str(exc))
    return serve(cfg) if args.command == "serve" else plan(cfg, args.alert)


if __name__ == "__main__":
    sys.exit(main())
