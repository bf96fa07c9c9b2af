"""The recovery service: Alertmanager webhooks in, guarded and verified playbook actions out."""
