"""Proxmox VMs of the stack: the PBS host and the k3s agents that carry Prometheus and Loki."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_proxmoxve as proxmox

from components.helm import child_name, child_options
from components.nodes_ready import NodesReady, NodesReadyArgs
from model import cloud_init
from model.config import StackConfig
from model.hosts import (DATA_DISK_INTERFACE, SYSTEM_DISK_INTERFACE, VmPlan, cloud_image_file_name, k3s_node_groups,
                         plan_vms)

# These inputs are read once, when a VM is created. The provider replaces a VM when they
# change, so later changes (a refreshed cloud image, new cloud-init content) are ignored on
# existing VMs rather than destroying their data disks; see README, "Data safety".
CREATE_ONLY_INPUTS = ["initialization.userDataFileId", "disks[0].fileId"]


@dataclass(frozen=True)
class HostsArgs:
    config: StackConfig
    secrets: dict[str, pulumi.Output[str]]
    # The cluster the k3s agents join, as the Kubernetes provider reaches it (kubernetes:context,
    # kubernetes:kubeconfig): where the readiness check looks for their nodes.
    kubernetes_context: str | None = None
    kubeconfig: pulumi.Input[str] | None = None


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
        self.k3s_nodes_ready = self._k3s_nodes_ready(args)
        self.addresses = {p.name: str(p.host.address) for p in self.plans}
        self.register_outputs({"addresses": self.addresses})

    def _k3s_nodes_ready(self, args: HostsArgs) -> NodesReady | None:
        """Done when the nodes of every k3s agent VM are Ready: what each Helm release waits for."""
        groups = k3s_node_groups(self.plans)
        if not groups or args.config.k3s is None:
            return None
        agents = [self.vms[name] for g in groups for name in sorted(g.hosts)]
        resource = child_name(self.component_name, "k3s-nodes-ready")
        return NodesReady(
            resource,
            NodesReadyArgs(groups=groups, vm_ids=[vm.id for vm in agents],
                           timeout_seconds=args.config.k3s.node_ready_timeout_seconds,
                           context=args.kubernetes_context, kubeconfig=args.kubeconfig),
            opts=child_options(self, resource, depends_on=agents),
        )

    def _cloud_images(self, config: StackConfig) -> dict[str, proxmox.download.File]:
        """The cloud image on every node that hosts a VM, downloaded by Proxmox and verified.

        No alias to the FileLegacy it replaces: the bridge does not move a resource's state to
        another type (pulumi-terraform-bridge#3388), so the first `up` after the change downloads
        this one beside the old file and then deletes the old one. The VMs keep their disks (copies
        of the image) and do not change: disks[0].fileId is create-only (CREATE_ONLY_INPUTS).
        """
        image = config.proxmox.cloud_image
        nodes = sorted({p.host.node for p in self.plans})
        images = {}
        for node in nodes:
            resource = child_name(self.component_name, f"cloud-image-{node}")
            images[node] = proxmox.download.File(
                resource,
                node_name=node,
                datastore_id=config.proxmox.image_datastore,
                # `iso` takes a .img disk image on every PVE 8 (`import` needs 8.4 and that content type).
                content_type="iso",
                file_name=cloud_image_file_name(image),
                url=image.url,
                checksum=image.checksum,
                checksum_algorithm=image.checksum_algorithm,
                # The image is read once per VM creation: no size checks, never re-downloaded by itself,
                # and never a file under this name that the stack did not download.
                overwrite=False,
                overwrite_unmanaged=False,
                upload_timeout=image.download_timeout_seconds,
                opts=child_options(self, resource),
            )
        return images

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

    def _vm(self, config: StackConfig, plan: VmPlan, image: proxmox.download.File,
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
