"""Proxmox VMs of the stack: the PBS host and the k3s agents that carry Prometheus and Loki."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_proxmoxve as proxmox

from components.helm import child_name, child_options
from model import cloud_init
from model.config import StackConfig
from model.hosts import DATA_DISK_INTERFACE, SYSTEM_DISK_INTERFACE, VmPlan, plan_vms

# These inputs are read once, when a VM is created. The provider replaces a VM when they
# change, so later changes (a refreshed cloud image, new cloud-init content) are ignored on
# existing VMs rather than destroying their data disks; see README, "Data safety".
CREATE_ONLY_INPUTS = ["initialization.userDataFileId", "disks[0].fileId"]


@dataclass(frozen=True)
class HostsArgs:
    config: StackConfig
    secrets: dict[str, pulumi.Output[str]]


class ProxmoxHosts(pulumi.ComponentResource):
    """One VM per entry of `hosts`, each booted from the cloud image with its user-data snippet."""

    def __init__(self, name: str, args: HostsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("homelab:infra:ProxmoxHosts", name, None, opts)
        self.component_name = name
        config, secrets = args.config, args.secrets
        self.plans = plan_vms(config)
        images = self._cloud_images(config)
        self.vms: dict[str, proxmox.VmLegacy] = {}
        for plan in self.plans:
            snippet = self._user_data_snippet(config, plan, secrets)
            self.vms[plan.name] = self._vm(config, plan, images[plan.host.node], snippet)
        self.addresses = {p.name: str(p.host.address) for p in self.plans}
        self.register_outputs({"addresses": self.addresses})

    def _cloud_images(self, config: StackConfig) -> dict[str, proxmox.download.FileLegacy]:
        image = config.proxmox.cloud_image
        nodes = sorted({p.host.node for p in self.plans})
        return {
            node: proxmox.download.FileLegacy(
                child_name(self.component_name, f"cloud-image-{node}"),
                node_name=node,
                datastore_id=config.proxmox.image_datastore,
                content_type="iso",
                file_name=image.file_name,
                url=image.url,
                checksum=image.checksum,
                checksum_algorithm=image.checksum_algorithm if image.checksum else None,
                overwrite=False,
                opts=child_options(self, child_name(self.component_name, f"cloud-image-{node}"), f"cloud-image-{node}"),
            )
            for node in nodes
        }

    def _user_data_snippet(self, config: StackConfig, plan: VmPlan, secrets: dict[str, pulumi.Output[str]]):
        keys = sorted(secrets)
        content = pulumi.Output.all(*(secrets[k] for k in keys)).apply(
            lambda values: cloud_init.render(cloud_init.user_data(config, plan, dict(zip(keys, values))))
        )
        resource = child_name(self.component_name, f"{plan.name}-user-data")
        return proxmox.FileLegacy(
            resource,
            node_name=plan.host.node,
            datastore_id=config.proxmox.snippet_datastore,
            content_type="snippets",
            source_raw={"data": pulumi.Output.secret(content), "file_name": plan.snippet_file_name},
            # Same file name on every change: the old snippet must go before the new one lands.
            opts=child_options(self, resource, f"{plan.name}-user-data", delete_before_replace=True),
        )

    def _vm(self, config: StackConfig, plan: VmPlan, image: proxmox.download.FileLegacy,
            snippet: proxmox.FileLegacy) -> proxmox.VmLegacy:
        host, net = plan.host, config.network
        disk_store = config.proxmox.vm_datastore
        resource = child_name(self.component_name, plan.name)
        return proxmox.VmLegacy(
            resource,
            name=plan.name,
            node_name=host.node,
            vm_id=host.vm_id,
            description=f"{plan.role.value} host of the {config.site.name} observability stack (managed by Pulumi)",
            tags=plan.tags,
            on_boot=True,
            started=True,
            migrate=True,  # a node change migrates the VM instead of recreating it
            protection=plan.holds_data,
            stop_on_destroy=True,
            agent={"enabled": True, "trim": True},
            cpu={"cores": host.cores, "type": "x86-64-v2-AES"},
            memory={"dedicated": host.memory_mb},
            operating_system={"type": "l26"},
            scsi_hardware="virtio-scsi-single",
            serial_devices=[{}],
            disks=[
                {"interface": SYSTEM_DISK_INTERFACE, "datastore_id": disk_store, "file_id": image.id,
                 "size": host.system_disk_gb, "discard": "on", "iothread": True, "ssd": True},
                {"interface": DATA_DISK_INTERFACE, "datastore_id": disk_store, "size": host.data_disk_gb,
                 "file_format": "raw", "discard": "on", "iothread": True, "ssd": True,
                 "backup": plan.back_up_data_disk},
            ],
            network_devices=[{"bridge": plan.bridge, "vlan_id": plan.vlan_id, "model": "virtio"}],
            initialization={
                "datastore_id": disk_store,
                "ip_configs": [{"ipv4": {"address": plan.address_cidr, "gateway": str(net.gateway)}}],
                "dns": {"domain": config.site.domain, "servers": [str(s) for s in net.dns_servers]},
                # A fixed ID rather than snippet.id: new snippet content never touches the VM.
                "user_data_file_id": f"{config.proxmox.snippet_datastore}:snippets/{plan.snippet_file_name}",
            },
            opts=child_options(
                self, resource, plan.name,
                depends_on=[snippet],
                protect=plan.holds_data,
                ignore_changes=CREATE_ONLY_INPUTS,
            ),
        )
