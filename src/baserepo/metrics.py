"""baserepo's metrics for Prometheus users (OpenTelemetry users need nothing: the meter
``baserepo`` reports to whatever meter provider the application sets).

Example::

    from prometheus_client import start_http_server
    from baserepo.metrics import register_prometheus

    register_prometheus()  # on prometheus_client's default registry
    start_http_server(9100)

Names, labels and units: docs/observability.md.
"""

from ._telemetry.prometheus import PrometheusCollector, register_prometheus

__all__ = ["PrometheusCollector", "register_prometheus"]
