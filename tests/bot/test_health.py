"""/healthz and /metrics over HTTP."""

from __future__ import annotations

import re

import aiohttp
import pytest

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
                "queue": {"backend": "embedded", "queued": 4, "running": 1},
                "workers": {"total": 1, "busy": 1},
            }
        status["value"] = QueueStatus("embedded", workers=1, busy=0, healthy=False)
        async with http.get(f"{url}/healthz") as response:
            assert response.status == 503
            assert (await response.json())["status"] == "degraded"


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
