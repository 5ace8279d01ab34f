"""Prometheus metrics, in a registry per app (so several apps can live in one process)."""

from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServiceMetrics:
    def __init__(self, gallery_size: Callable[[], float], queue_depth: Callable[[], float]):
        self.registry = CollectorRegistry()
        self.requests = Counter("cfd_http_requests_total", "HTTP requests", ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("cfd_http_request_duration_seconds", "HTTP request latency", ["route", "method", "status"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("cfd_model_batch_size", "images per model forward pass",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=self.registry)
        Gauge("cfd_gallery_references", "references in the index", registry=self.registry).set_function(gallery_size)
        Gauge("cfd_model_queue_images", "images waiting for the model", registry=self.registry).set_function(queue_depth)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        labels = (route, method, str(status))
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
