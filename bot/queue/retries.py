"""What every back end does when a running job loses its worker (a crash, a hang, a restart of the bot)."""

from __future__ import annotations

import logging

from bot.db import Database, JobRecord
from bot.queue.events import EventLines

log = logging.getLogger(__name__)

WORKER_LOST = "worker_lost"  # the failure code of a job that lost its worker on every attempt


async def retry_or_fail(db: Database, events: EventLines | None, record: JobRecord, reason: str) -> bool:
    """Queue the job again while it has attempts left, else fail it; tell the bot either way.

    Returns True when the job is queued again (the caller's dispatcher has work). The database's guarded
    transitions decide: a job that meanwhile ended or was cancelled is left as it is.
    """
    where = f"job {record.id} (user {record.user_id}) on {record.worker}"
    if record.attempts < record.max_attempts:
        if await db.requeue_job(record.id, reason) is None:
            return False
        log.warning("%s: queued again after attempt %d: %s", where, record.attempts, reason)
        if events is not None:
            events.send(record.id, "job_retrying", record.id, reason)
        return True
    if await db.fail_job(record.id, WORKER_LOST, reason) is not None:
        log.error("%s: failed after %d attempts: %s", where, record.attempts, reason)
        if events is not None:
            events.send(record.id, "job_failed", record.id, WORKER_LOST, reason)
    return False


def log_left_running(record: JobRecord) -> None:
    log.warning(
        "job %d (user %d) was running on %s when the bot stopped (attempt %d of %d)",
        record.id,
        record.user_id,
        record.worker,
        record.attempts,
        record.max_attempts,
    )
