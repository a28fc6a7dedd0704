"""Helpers for the Celery queue's tests: the local brokers, real ``python -m engine worker`` processes.

Isolation: every test gets its own ``QUEUE_NAME`` (a namespace: Redis keys are prefixed with it, RabbitMQ
queues and exchanges are named after it) inside a RabbitMQ virtual host made for the test session, so
parallel or repeated runs never see each other's messages. What a test leaves on a broker is deleted when
it ends.

Worker processes run in a process group of their own, so a test can check that none survives and kill
whatever does, even when the test failed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis
from kombu import Connection

from engine.workers.settings import Names

ROOT = Path(__file__).resolve().parents[3]
REDIS_URL = os.environ.get("STYLEBOT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RABBITMQ_URL = os.environ.get("STYLEBOT_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672")
# How the local servers are (re)started: the same commands that started them for the test machine.
REDIS_START = [
    "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379", "--save", "",
    "--appendonly", "no", "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/ci.log",
]  # fmt: skip
SERVER_START_TIMEOUT = 60.0


def namespace() -> str:
    """A ``QUEUE_NAME`` of its own for one test."""
    return f"stylebot-test-{uuid.uuid4().hex[:10]}"


class RedisBroker:
    name = "redis"

    def __init__(self, url: str = REDIS_URL) -> None:
        self.base_url = url

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.base_url, socket_connect_timeout=2, socket_timeout=5)

    def ping(self) -> None:
        self.client().ping()

    def open_session(self) -> None:
        """Nothing to prepare: test namespaces are key prefixes."""

    def close_session(self) -> None:
        pass

    def url(self) -> str:
        return self.base_url

    def clean(self, name: str) -> None:
        """Delete every key of a test's namespace (``global_keyprefix`` puts them under ``name:``)."""
        with contextlib.suppress(redis.RedisError):
            client = self.client()
            for key in client.scan_iter(match=f"{name}:*", count=500):
                client.delete(key)

    def restart(self) -> None:
        """Shut the real server down (losing everything, as it saves nothing) and start it again."""
        with contextlib.suppress(redis.RedisError):
            self.client().shutdown(nosave=True)
        _wait(lambda: not _answers(self.ping), "Redis to stop")
        self.ensure_running()

    def ensure_running(self) -> None:
        if _answers(self.ping):
            return
        subprocess.run(REDIS_START, check=True, timeout=30, capture_output=True)
        _wait(lambda: _answers(self.ping), "Redis to start")


class RabbitBroker:
    name = "rabbitmq"

    def __init__(self, url: str = RABBITMQ_URL) -> None:
        self.base_url = url.rstrip("/")
        self.vhost = f"stylebot-test-{uuid.uuid4().hex[:10]}"

    def ping(self) -> None:
        with Connection(f"{self.base_url}//", connect_timeout=2) as connection:
            connection.ensure_connection(max_retries=1, timeout=2)

    def open_session(self) -> None:
        """A virtual host for this test session, so no other run ever shares a queue with it."""
        _rabbitmqctl("add_vhost", self.vhost)
        _rabbitmqctl("set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*")

    def close_session(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            _rabbitmqctl("delete_vhost", self.vhost)

    def url(self) -> str:
        return f"{self.base_url}/{self.vhost}"

    def clean(self, name: str) -> None:
        """Delete the durable queues a test left (the exchanges go with the virtual host)."""
        names = Names.of(name)
        with contextlib.suppress(Exception), Connection(self.url(), connect_timeout=2) as connection:
            channel = connection.channel()
            for queue in (names.jobs, names.events):
                with contextlib.suppress(Exception):
                    channel.queue_delete(queue)

    def restart(self) -> None:
        """Stop the real server and start it again; durable queues and persistent messages survive."""
        with contextlib.suppress(subprocess.SubprocessError):
            _rabbitmqctl("stop")
        self.ensure_running()

    def ensure_running(self) -> None:
        if _answers(self.ping):
            return
        subprocess.run(["rabbitmq-server", "-detached"], check=False, timeout=30, capture_output=True)
        _wait(lambda: _answers(self.ping), "RabbitMQ to start", timeout=SERVER_START_TIMEOUT)


Broker = RedisBroker | RabbitBroker


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, timeout=60, capture_output=True)


def _answers(ping: Any) -> bool:
    try:
        ping()
    except Exception:
        return False
    return True


def _wait(condition: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.2)


class WorkerProcesses:
    """``python -m engine worker`` commands started by one test, each in a process group of its own."""

    def __init__(self, url: str, name: str, log_dir: Path, *, env: dict[str, str]) -> None:
        self.url = url
        self.name = name
        self.log_dir = log_dir
        self.env = env
        self.commands: list[subprocess.Popen[bytes]] = []

    def start(self, *, factory: str = "tests.fakes.engine:fake_engine", processes: int = 1) -> None:
        """One supervisor with ``processes`` worker processes on the CPU."""
        log = self.log_dir / f"worker-{len(self.commands)}.log"
        argv = [
            sys.executable, "-m", "engine", "worker", "--device", "cpu", "--queue-url", self.url,
            "--engine-factory", factory, "--concurrency-per-gpu", str(processes), "--cancel-grace", "2",
        ]  # fmt: skip
        env = {**os.environ, **self.env, "QUEUE_NAME": self.name, "PYTHONUNBUFFERED": "1"}
        with log.open("ab") as out:
            command = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.commands.append(command)

    def logs(self) -> str:
        return "\n".join(
            path.read_text(errors="replace") for path in sorted(self.log_dir.glob("worker-*.log"))
        )

    def group_pids(self) -> list[int]:
        """Every live process in the groups of the commands started here."""
        groups = {command.pid for command in self.commands}
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            state, pgid = fields[0], int(fields[2])
            if pgid in groups and state != "Z":
                found.append(int(entry.name))
        return found

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to each supervisor (they stop their workers), then SIGKILL to whatever is left."""
        for command in self.commands:
            if command.poll() is None:
                command.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for command in self.commands:
            with contextlib.suppress(subprocess.TimeoutExpired):
                command.wait(max(0.1, deadline - time.monotonic()))
        self.kill()

    def kill(self) -> None:
        for command in self.commands:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(command.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                command.wait(5)
        _wait(lambda: not self.group_pids(), "the worker processes to go", timeout=10)


@contextlib.contextmanager
def brought_back(broker: Broker) -> Iterator[None]:
    """Whatever happens in the block, the broker is running again after it."""
    try:
        yield
    finally:
        broker.ensure_running()
