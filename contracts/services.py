"""The `service` label values of the stack's own alerts: the routing table and the rooms match on them.

The services of the stack config's SLOs and probe targets (api-gateway, ...) are the user's, not here.
"""

BACKUPS = "backups"
NODES = "nodes"
STORAGE = "storage"
OBSERVABILITY = "observability"
LOGS = "logs"
NETWORK = "network"
VIRTUALIZATION = "virtualization"
