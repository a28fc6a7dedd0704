"""``/healthz``, ``/readyz`` and Prometheus ``/metrics`` on a small aiohttp server beside the bot.

The server comes up before the process waits for the database's lease (``bot.runtime``), so a standby
process (another one holds the lease) answers its liveness probe instead of being restarted forever.

- ``/healthz`` (liveness): 200 while the process stands by (``"status": "standby"``, with the lease's
  holder) or is starting (it holds the lease; the queue and front ends are coming up); once it serves, 200
  while the queue has a usable worker and 503 otherwise, so an orchestrator can restart a bot whose
  workers keep dying.
- ``/readyz`` (readiness): 200 only while this process serves jobs with a usable worker; 503 while it
  stands by or starts (nothing here takes jobs or webhook updates yet).
- ``/metrics``: the queue length, jobs by outcome, job durations, results given up (the platform said
  they can never be delivered), and ``stylebot_serving`` (1 while this process holds the lease and serves).
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
STANDBY, STARTING, SERVING = "standby", "starting", "serving"  # a process's life, as the endpoint tells it


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
        self.serving = Gauge(
            "stylebot_serving",
            "1 while this process holds the database's lease and serves jobs, 0 while it stands by",
            registry=self.registry,
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
        self.state = STARTING  # ``bot.runtime`` says STANDBY while it waits for the lease, SERVING once up
        self.lease_holder: Callable[[], str | None] = lambda: None  # who holds the lease, while standing by
        self._runner: web.AppRunner | None = None

    def stand_by(self, holder: Callable[[], str | None]) -> None:
        """The process waits for the database's lease; ``holder`` says who has it (None: not known yet)."""
        self.state, self.lease_holder = STANDBY, holder

    def starting(self) -> None:
        """The lease is held; the queue and the front ends are coming up."""
        self.state = STARTING

    def serving(self) -> None:
        self.state = SERVING

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics_page)
        return app

    def _report(self) -> tuple[dict, bool]:
        """The body both probes answer, and whether this process serves jobs with a usable worker."""
        if self.state != SERVING:  # the queue is not started: its status would say nothing
            body: dict = {"status": self.state, "serving": False}
            if self.state == STANDBY:
                body["lease"] = {"holder": self.lease_holder() or "unknown"}
            return body, False
        status = self.queue_status()
        queued, running = self.queue_counts()
        body = {
            "status": "ok" if status.healthy else "degraded",
            "serving": True,
            "queue": {"backend": status.backend, "queued": queued, "running": running},
            "workers": {"total": status.workers, "busy": status.busy},
        }
        return body, status.healthy

    async def healthz(self, request: web.Request) -> web.Response:
        """Liveness: a process standing by or starting is alive; a serving one is while a worker is."""
        body, ready = self._report()
        return web.json_response(body, status=200 if ready or self.state != SERVING else 503)

    async def readyz(self, request: web.Request) -> web.Response:
        """Readiness: this process takes jobs (it holds the lease, runs, and a worker can paint)."""
        body, ready = self._report()
        return web.json_response(body, status=200 if ready else 503)

    async def metrics_page(self, request: web.Request) -> web.Response:
        status = self.queue_status()
        queued, running = self.queue_counts()
        self.metrics.queue_length.set(queued)
        self.metrics.running.set(running)
        self.metrics.workers.set(status.workers)
        self.metrics.serving.set(1 if self.state == SERVING else 0)
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @property
    def listening(self) -> bool:
        return self._runner is not None

    async def start(self) -> None:
        """Listen on ``host:port`` (nothing with port 0); once listening, a second call does nothing.
        ``OSError`` when the port is taken (then nothing is left half set up)."""
        if self.port == 0 or self._runner is not None:
            return
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        log.info("health endpoint on http://%s:%d/healthz", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
