"""Vigil's Grafana dashboards as code (grafana-foundation-sdk), rendered by `vigil dashboards`.

One module per dashboard (health, config_schema, predictions, incidents); shared defaults in
common; rendering and query walking in render; the CLI in cli. See docs/dashboards.md.
"""
