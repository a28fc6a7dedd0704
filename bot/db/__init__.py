"""Stylebot's data layer. SQLAlchemy stays inside this package: callers get frozen records.

Make one ``Database(url)`` per process, ``await db.migrate()`` at start-up, call its repository methods
(``await db.upsert_user(...)``, ``await db.claim_job(...)``) and ``await db.dispose()`` at shutdown.
"""

from bot.db.database import DEFAULT_URL, Database, alembic_config, normalize_url
from bot.db.models import PRESET_NAME_MAX
from bot.db.records import (
    NO_MESSAGE,
    SKETCH_WORKER,
    ChatDefaultsRecord,
    ChatMove,
    JobRecord,
    JobState,
    PresetRecord,
    StyleImageRecord,
    UserRecord,
)
from bot.db.repositories import JobLimits, LimitExceededError, RequestMadeError, preset_key

__all__ = [
    "DEFAULT_URL",
    "NO_MESSAGE",
    "PRESET_NAME_MAX",
    "SKETCH_WORKER",
    "ChatDefaultsRecord",
    "ChatMove",
    "Database",
    "JobLimits",
    "JobRecord",
    "JobState",
    "LimitExceededError",
    "PresetRecord",
    "RequestMadeError",
    "StyleImageRecord",
    "UserRecord",
    "alembic_config",
    "normalize_url",
    "preset_key",
]
