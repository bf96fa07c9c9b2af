"""The inventory of playbooks/backup-fallback.yml: which PVE API it talks to and which NAS export it
backs up to. Rendered from the stack config by the preview; the token is a file path, never a value."""

from __future__ import annotations

GROUP = "pve_api"  # the play's hosts


def inventory(*, pve_url: str, token_file: str, verify_tls: bool, storage: str, nas_server: str, nas_export: str,
              mode: str = "snapshot", compress: str = "zstd", poll_seconds: int = 10, poll_retries: int = 720) -> dict:
    return {GROUP: {"hosts": {"pve-api": {
        "ansible_connection": "local",
        "ansible_python_interpreter": "{{ ansible_playbook_python }}",
        "pve_api_url": pve_url.rstrip("/"),
        "pve_token_file": token_file,
        "pve_validate_certs": verify_tls,
        "nas_storage": storage,
        "nas_server": nas_server,
        "nas_export": nas_export,
        "backup_mode": mode,
        "backup_compress": compress,
        "task_poll_seconds": poll_seconds,
        "task_poll_retries": poll_retries,
    }}}}
