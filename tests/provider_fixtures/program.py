"""Registrations the providers' Check would refuse or warn about, for tests/program/test_preview.py.

The SDK's typed arguments accept these (its types are hints), and so does the mock engine:
only the offline engine's provider check stands between them and a failed `pulumi up`.
"""

import pulumi_proxmoxve as proxmox

# A string where the provider wants an integer, and a disk property the provider does not have.
proxmox.VmLegacy("refused-vm", node_name="pve1", cpu={"cores": "4"}, disks=[{"interface": "scsi0", "sizee": 8}])

# The same deprecated resource twice: one warning that names both.
for node in ("pve1", "pve2"):
    proxmox.download.FileLegacy(f"deprecated-image-{node}", node_name=node, datastore_id="local",
                                content_type="iso", url="https://example.invalid/image.img")
