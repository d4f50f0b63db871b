"""The built-in dashboard: panels over the warehouse views, served on 127.0.0.1.

``headwater dashboard`` (and ``headwater up``) serve it; :mod:`headwater.infra.dashboard.panels`
lists
the panels, which also make the Grafana dashboard in ``deploy/grafana``.
"""
