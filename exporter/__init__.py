"""Vigil exporter: configuration checks as Prometheus metrics (`vigil-exporter`) and as a
deploy gate (`vigil validate`).

Modules: base (Finding, CheckResult, Check), config (load_config), one module per check
(cors, env, security, endpoints, journeys; schema/ for the database), checks (build_checks),
runner (timeouts, cache, isolation), collector (metric families), score, report, service,
validate.
"""
