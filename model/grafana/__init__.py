"""Grafana as data: chart values, data sources, folders and dashboards, runbooks, alerting.

Pure generators (no Pulumi), one concept per module: components/grafana.py turns what they
return into resources, the offline preview writes it under build/<stack>/grafana/, the tests
check it with real tools.
"""
