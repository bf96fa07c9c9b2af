"""build/<stack>/runbook-hub/: the runbook hub's site exactly as its nginx serves it.

Read from the recorded resources: each file is the ConfigMap's value at the key the
Deployment's `pages` volume mounts at that path, so the directory is what the pod sees under
the hub's URL path (open index.html in a browser; its links are relative).
"""

from __future__ import annotations

from pathlib import Path

from tools.offline_engine import Recording

CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
HUB = "runbook-hub"


def write_runbook_hub(recording: Recording, out: Path) -> None:
    def ours(type_: str):
        return [r for r in recording.of_type(type_) if (r.inputs.get("metadata") or {}).get("name") == HUB]

    deployments, maps = ours(DEPLOYMENT), ours(CONFIG_MAP)
    if not deployments or not maps:
        return  # the hub is not served by this stack (site.runbookHub.serve: false)
    data = maps[0].inputs["data"]
    volumes = deployments[0].inputs["spec"]["template"]["spec"]["volumes"]
    pages = next(v for v in volumes if v["name"] == "pages")["configMap"]["items"]
    for item in pages:
        target = out / "runbook-hub" / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(recording.redact_text(data[item["key"]]))
