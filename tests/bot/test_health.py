"""/healthz, /readyz and /metrics over HTTP, from the wait for the database's lease to serving."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.db.lease import lease_for
from bot.health import HealthServer, Metrics
from bot.queue.base import QueueStatus


@pytest.fixture
async def server(unused_tcp_port: int):
    metrics = Metrics()
    status = {"value": QueueStatus("embedded", workers=1, busy=1, healthy=True)}
    health = HealthServer(
        metrics, lambda: status["value"], lambda: (4, 1), host="127.0.0.1", port=unused_tcp_port
    )
    await health.start()
    health.serving()
    try:
        yield f"http://127.0.0.1:{unused_tcp_port}", metrics, status
    finally:
        await health.stop()


async def test_healthz_reports_the_queue(server) -> None:
    url, _, status = server
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/healthz") as response:
            assert response.status == 200
            assert await response.json() == {
                "status": "ok",
                "serving": True,
                "queue": {"backend": "embedded", "queued": 4, "running": 1},
                "workers": {"total": 1, "busy": 1},
            }
        status["value"] = QueueStatus("embedded", workers=1, busy=0, healthy=False)
        async with http.get(f"{url}/healthz") as response:
            assert response.status == 503
            assert (await response.json())["status"] == "degraded"
        async with http.get(f"{url}/readyz") as response:
            assert response.status == 503  # no worker: not ready either


async def test_metrics_in_prometheus_format(server) -> None:
    url, metrics, _ = server
    metrics.ended("done", 12.0)
    metrics.ended("failed")
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as response:
        body = await response.text()
    assert response.status == 200
    assert "stylebot_queue_length 4.0" in body
    assert "stylebot_jobs_running 1.0" in body
    assert 'stylebot_jobs_total{outcome="done"} 1.0' in body
    assert 'stylebot_jobs_total{outcome="cancelled"} 0.0' in body
    assert "stylebot_job_seconds_count 1.0" in body
    for platform in ("telegram", "discord"):  # present at zero before any result is given up
        assert f'stylebot_deliveries_given_up_total{{platform="{platform}"}} 0.0' in body
    metrics.given_up("discord")
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as response:
        body = await response.text()
    assert 'stylebot_deliveries_given_up_total{platform="discord"} 1.0' in body
    assert 'stylebot_deliveries_given_up_total{platform="telegram"} 0.0' in body


async def test_port_zero_turns_it_off() -> None:
    health = HealthServer(
        Metrics(), lambda: QueueStatus("embedded", 0, 0, False), lambda: (0, 0), host="x", port=0
    )
    await health.start()  # no server, no error
    await health.stop()


def test_listens_on_loopback_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """/metrics has no auth: only the machine itself sees it by default; compose opts in to 0.0.0.0 and
    publishes the port on the host's loopback only."""
    from pathlib import Path

    from bot.config import Settings

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HEALTH_HOST", raising=False)
    assert Settings(telegram_bot_token="1:x").health_host == "127.0.0.1"  # type: ignore[call-arg]
    compose = (Path(__file__).resolve().parents[2] / "compose.yaml").read_text()
    bot = compose.split("\n  bot:\n", 1)[1].split("\n  worker:\n", 1)[0]  # the bot service's block
    assert re.search(r"^\s+HEALTH_HOST: \"?0\.0\.0\.0\"?$", bot, re.MULTILINE)
    ports = re.findall(r"^\s+- \"([^\"]+)\"$", bot.split("ports:", 1)[1].split("depends_on:", 1)[0], re.M)
    assert ports
    assert all(port.startswith("127.0.0.1:") for port in ports)


async def get(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, await response.json()


async def test_a_process_standing_by_is_alive_but_not_ready(unused_tcp_port: int) -> None:
    """Waiting for the lease, nothing is started (the queue's status says nothing yet): /healthz says
    "standby" with 200 so a liveness probe leaves it alone, /readyz 503; then starting, then serving."""
    status = QueueStatus("embedded", workers=0, busy=0, healthy=False)  # a queue not started
    health = HealthServer(Metrics(), lambda: status, lambda: (0, 0), host="127.0.0.1", port=unused_tcp_port)
    url = f"http://127.0.0.1:{unused_tcp_port}"
    holder: list[str | None] = [None]
    health.stand_by(lambda: holder[0])
    await health.start()
    try:
        assert await get(f"{url}/healthz") == (
            200,
            {"status": "standby", "serving": False, "lease": {"holder": "unknown"}},
        )
        holder[0] = "pid 4242 on host-a since 2026-01-01 00:00:00 UTC"
        _, body = await get(f"{url}/healthz")
        assert body["lease"]["holder"] == holder[0]
        assert (await get(f"{url}/readyz"))[0] == 503
        async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as response:
            assert "stylebot_serving 0.0" in await response.text()
        health.starting()
        assert await get(f"{url}/healthz") == (200, {"status": "starting", "serving": False})
        assert (await get(f"{url}/readyz"))[0] == 503
        status = QueueStatus("embedded", workers=1, busy=0, healthy=True)
        health.serving()
        assert (await get(f"{url}/healthz"))[0] == 200
        assert (await get(f"{url}/readyz"))[0] == 200
        async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as response:
            assert "stylebot_serving 1.0" in await response.text()
    finally:
        await health.stop()


async def test_a_taken_port_leaves_nothing_half_started(unused_tcp_port: int) -> None:
    health = HealthServer(
        Metrics(),
        lambda: QueueStatus("embedded", 1, 0, True),
        lambda: (0, 0),
        host="127.0.0.1",
        port=unused_tcp_port,
    )
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", unused_tcp_port))
        taken.listen()
        with pytest.raises(OSError, match="address already in use"):
            await health.start()
        assert not health.listening
    await health.start()  # free again: it comes up
    await health.start()  # and a second start changes nothing
    try:
        assert health.listening
        assert (await get(f"http://127.0.0.1:{unused_tcp_port}/healthz"))[0] == 200
    finally:
        await health.stop()


class IdleQueue:
    """A queue that never starts a worker (``Runtime.prepare`` starts no queue anyway)."""

    async def start(self, events: Any) -> None:
        return None

    async def stop(self) -> None:
        return None

    def status(self) -> QueueStatus:
        return QueueStatus("idle", workers=1, busy=0, healthy=True)


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(300):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("never happened")


@pytest.fixture
def core_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, unused_tcp_port: int):
    from bot.config import Settings

    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    return Settings(
        telegram_bot_token="1:x",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
        data_dir=tmp_path / "data",
        styles_prefetch=False,
        health_host="127.0.0.1",
        health_port=unused_tcp_port,
    )


async def test_a_standby_runtime_answers_its_liveness_probe_while_it_waits_for_the_lease(
    core_settings: Any, unused_tcp_port: int
) -> None:
    """Another process holds the database's lease: ``Runtime.prepare`` waits, and meanwhile /healthz
    answers 200 "standby" naming the holder (before, nothing listened until the lease was taken, and a
    container's liveness probe restarted the standby forever)."""
    from bot.runtime import Runtime, build_services

    other = lease_for(core_settings.database_url, on_lost=print)
    assert await other.acquire(asyncio.Event())
    core = build_services(core_settings, lambda settings, db: IdleQueue())  # type: ignore[arg-type, return-value]
    runtime = Runtime(core)
    runtime.lease.poll_seconds = 0.05
    runtime.lease.check_seconds = 0.05
    url = f"http://127.0.0.1:{unused_tcp_port}"
    preparing = asyncio.create_task(runtime.prepare())
    try:
        await until(lambda: runtime.lease.holder is not None)
        code, body = await get(f"{url}/healthz")
        assert code == 200
        assert body["status"] == "standby"
        assert body["serving"] is False
        assert "pid " in body["lease"]["holder"]
        assert (await get(f"{url}/readyz"))[0] == 503
        await other.release()
        async with asyncio.timeout(15):
            assert await preparing
        assert (await get(f"{url}/healthz")) == (200, {"status": "starting", "serving": False})
    finally:
        await other.release()
        await runtime.stop()


async def test_a_port_taken_while_standing_by_is_a_warning_not_an_exit(
    core_settings: Any, unused_tcp_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Two bots on one host with one HEALTH_PORT: the one that waits says so and waits all the same."""
    from bot.runtime import Runtime, build_services

    caplog.set_level(logging.WARNING, logger="bot.runtime")
    core = build_services(core_settings, lambda settings, db: IdleQueue())  # type: ignore[arg-type, return-value]
    runtime = Runtime(core)
    try:
        with socket.socket() as taken:
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            taken.bind(("127.0.0.1", unused_tcp_port))
            taken.listen()
            async with asyncio.timeout(15):
                assert await runtime.prepare()
        assert not core.health.listening
        assert any("health endpoint not up" in r.getMessage() for r in caplog.records)
        await core.health.start()  # what Runtime.start does again
        assert (await get(f"http://127.0.0.1:{unused_tcp_port}/healthz"))[0] == 200
    finally:
        await runtime.stop()
