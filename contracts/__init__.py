"""The names the parts of the stack share: alerts and their services, exporter metrics, the
recovery service's catalog. A leaf: standard library only, importing nothing of the repository,
so the Pulumi program, the tools and the services on the hosts all read it (cloud-init ships it
to the pbs host beside the recovery service). Everything else imports these names; none re-spells them.
"""
