"""The homelab stack's Pulumi policy pack: policies in policies.py, chart knowledge in charts.py."""
