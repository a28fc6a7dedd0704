"""``/healthz`` and Prometheus ``/metrics`` on a small aiohttp server beside the bot.

``/healthz`` answers 200 while the queue has a usable worker and 503 otherwise, so an orchestrator can
restart a bot whose workers keep dying. ``/metrics`` exposes the queue length, jobs by outcome, job
durations and results given up (the platform said they can never be delivered).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from bot.frontend import PLATFORMS
from bot.queue.base import QueueStatus

log = logging.getLogger(__name__)

OUTCOMES = ("done", "failed", "cancelled")


class Metrics:
    """The bot's metrics in a registry of their own (tests create several bots in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.queue_length = Gauge(
            "stylebot_queue_length", "Jobs waiting for a worker", registry=self.registry
        )
        self.running = Gauge("stylebot_jobs_running", "Jobs being painted now", registry=self.registry)
        self.workers = Gauge(
            "stylebot_workers", "Worker processes the queue knows of", registry=self.registry
        )
        self.jobs = Counter(
            "stylebot_jobs", "Jobs that ended, by outcome", ["outcome"], registry=self.registry
        )
        self.job_seconds = Histogram(
            "stylebot_job_seconds",
            "Engine time of finished jobs",
            buckets=(5, 10, 20, 40, 60, 120, 240, 480, 960),
            registry=self.registry,
        )
        self.deliveries_given_up = Counter(
            "stylebot_deliveries_given_up",
            "Finished results the platform said can never reach their owner (blocked, chat gone)",
            ["platform"],
            registry=self.registry,
        )
        for outcome in OUTCOMES:
            self.jobs.labels(outcome)  # present at zero from the start, so rate() works at once
        for platform in PLATFORMS:
            self.deliveries_given_up.labels(platform)

    def ended(self, outcome: str, seconds: float | None = None) -> None:
        self.jobs.labels(outcome).inc()
        if seconds is not None:
            self.job_seconds.observe(seconds)

    def given_up(self, platform: str) -> None:
        self.deliveries_given_up.labels(platform).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class HealthServer:
    def __init__(
        self,
        metrics: Metrics,
        queue_status: Callable[[], QueueStatus],
        queue_counts: Callable[[], tuple[int, int]],
        *,
        host: str,
        port: int,
    ) -> None:
        self.metrics = metrics
        self.queue_status = queue_status
        self.queue_counts = queue_counts  # (queued, running), kept current by the notifier
        self.host, self.port = host, port
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.metrics_page)
        return app

    async def healthz(self, request: web.Request) -> web.Response:
        status = self.queue_status()
        queued, running = self.queue_counts()
        body = {
            "status": "ok" if status.healthy else "degraded",
            "queue": {"backend": status.backend, "queued": queued, "running": running},
            "workers": {"total": status.workers, "busy": status.busy},
        }
        return web.json_response(body, status=200 if status.healthy else 503)

    async def metrics_page(self, request: web.Request) -> web.Response:
        status = self.queue_status()
        queued, running = self.queue_counts()
        self.metrics.queue_length.set(queued)
        self.metrics.running.set(running)
        self.metrics.workers.set(status.workers)
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self) -> None:
        if self.port == 0:
            return
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        log.info("health endpoint on http://%s:%d/healthz", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
