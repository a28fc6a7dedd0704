"""Everything the bot asks of the database, as async methods that take and return plain values.

The methods live on mixins that ``bot.db.database.Database`` combines; each call is one short
transaction. Job state changes are single ``UPDATE ... WHERE state IN (...) RETURNING`` statements, so
two workers, or a late result and a cancel, cannot both win: the loser gets ``None``/``False`` and the row
stays as the winner left it.

Limits (jobs per user, per hour, in the queue; presets per user) are checked in the same transaction as
the insert, which first takes a lock (``_serialized``), so requests arriving at once cannot all see room
for one more. The lock is the database's, not the process's: it holds however many bot processes share
the database.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Executable,
    case,
    delete,
    exists,
    extract,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import (
    GIVE_UP_REASON_MAX,
    PRESET_NAME_MAX,
    Base,
    BlockedUser,
    ChatDefaults,
    DisabledChat,
    Job,
    Preset,
    StyleImage,
    User,
    utcnow,
)
from bot.db.records import (
    INSTANT_QUALITY,
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

R = TypeVar("R")

MAX_JOB_ID = 2**31 - 1  # jobs.id is a 32-bit INTEGER on PostgreSQL; ids arrive from (forgeable) buttons
JOB_LOCK_KEY = 0x5374796C  # PostgreSQL advisory lock taken while a job is checked against limits and added
CHAT_MOVE_LOCK_KEY = 0x5374796D  # PostgreSQL advisory lock a chat's move holds: two moves at once go in turn
HOUR = timedelta(hours=1)


@dataclasses.dataclass(frozen=True)
class JobLimits:
    max_active: int  # queued or running jobs per user
    max_per_hour: int  # jobs a user created in the last hour, whatever became of them
    max_queued: int  # queued jobs of everyone


class LimitExceededError(Exception):
    """A limit is reached; nothing was written. ``kind``: "active", "hourly", "queue_full" or "presets";
    ``oldest``: for "hourly", when the oldest job of the hour was created."""

    def __init__(self, kind: str, count: int, oldest: datetime | None = None) -> None:
        super().__init__(f"{kind} limit reached ({count})")
        self.kind, self.count, self.oldest = kind, count, oldest


class RequestMadeError(Exception):
    """``create_job`` with a ``request_key`` that made a job already: nothing was written; ``job`` is that
    job (the platform sent the same request again)."""

    def __init__(self, job: JobRecord) -> None:
        super().__init__(f"job {job.id} was made for request {job.request_key!r}")
        self.job = job


def preset_key(name: str) -> str:
    """The form preset names are compared in: trimmed and case-folded (Unicode-aware)."""
    return name.strip().casefold()


def _record(cls: type[R], row: Base, **overrides: Any) -> R:
    values = {f.name: getattr(row, f.name) for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values.update(overrides)
    return cls(**values)


def _user(row: User) -> UserRecord:
    return _record(UserRecord, row)


def _preset(row: Preset) -> PresetRecord:
    return _record(PresetRecord, row)


def _chat(row: ChatDefaults) -> ChatDefaultsRecord:
    return _record(ChatDefaultsRecord, row)


def _job(row: Job) -> JobRecord:
    return _record(JobRecord, row, state=JobState(row.state))


def _held_by(worker: str | None) -> list[ColumnElement[bool]]:
    """The guard of a transition only its worker may make; none when no worker is named."""
    return [] if worker is None else [Job.worker == worker]


def _states(states: Iterable[JobState]) -> list[str]:
    return [JobState(s).value for s in states]


class _Repository:
    """What the mixins need from ``Database``."""

    @property
    def dialect_name(self) -> str:
        raise NotImplementedError

    def session(self) -> AbstractAsyncContextManager[AsyncSession]:
        raise NotImplementedError

    @asynccontextmanager
    async def _serialized(self, postgres_lock: Executable) -> AsyncIterator[AsyncSession]:
        """A transaction that holds a write lock from its first statement, so that a check and the
        write that depends on it are one atomic step.

        SQLite: ``BEGIN IMMEDIATE`` takes the database's write lock at once (other writers wait, up to
        the busy timeout, in this or any other process). PostgreSQL: ``postgres_lock``, a row lock or an
        advisory lock, held until the transaction ends. Readers are never blocked on either.
        """
        async with self.session() as session:
            if self.dialect_name == "sqlite":
                await session.execute(text("BEGIN IMMEDIATE"))
            else:
                await session.execute(postgres_lock)
            yield session

    def _insert(self, model: type[Base]) -> Any:
        """An INSERT that knows ``ON CONFLICT``; both back ends spell it the same way."""
        dialect = postgresql if self.dialect_name == "postgresql" else sqlite
        return dialect.insert(model)

    async def _upsert(self, stmt: Any, model: type[R]) -> R:
        async with self.session() as session:
            result = await session.scalars(
                stmt.returning(model), execution_options={"populate_existing": True}
            )
            return result.one()


class UserRepository(_Repository):
    async def upsert_user(
        self,
        user_id: int,
        username: str | None,
        first_name: str | None,
        language_code: str | None,
        *,
        platform: str,
    ) -> UserRecord:
        """Create the user on first contact, else refresh their names and ``last_seen_at``.

        One ``INSERT ... ON CONFLICT`` statement, so two updates from the same user racing each other
        cannot both try to insert. Settings are never touched here.
        """
        now = utcnow()
        stmt = self._insert(User).values(
            platform=platform,
            id=user_id,
            username=username,
            first_name=first_name,
            language_code=language_code,
            settings={},
            created_at=now,
            last_seen_at=now,
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[User.platform, User.id],
            set_={
                "username": stmt.excluded.username,
                "first_name": stmt.excluded.first_name,
                "language_code": stmt.excluded.language_code,
                "last_seen_at": stmt.excluded.last_seen_at,
            },
        )
        return _user(await self._upsert(stmt, User))

    async def get_user(self, user_id: int, *, platform: str) -> UserRecord | None:
        async with self.session() as session:
            row = await session.get(User, (platform, user_id))
            return None if row is None else _user(row)

    async def update_user_settings(
        self, user_id: int, settings: dict[str, Any], *, platform: str
    ) -> UserRecord | None:
        """Replace the user's settings dict as a whole; ``None`` if the user is unknown."""
        stmt = (
            update(User)
            .where(User.platform == platform, User.id == user_id)
            .values(settings=dict(settings))
            .returning(User)
        )
        async with self.session() as session:
            row = (await session.scalars(stmt, execution_options={"populate_existing": True})).first()
            return None if row is None else _user(row)


class PresetRepository(_Repository):
    async def save_preset(
        self,
        user_id: int,
        name: str,
        styles: Sequence[dict[str, Any]],
        settings: dict[str, Any],
        *,
        max_presets: int | None = None,
        platform: str,
    ) -> PresetRecord:
        """Insert a preset, or overwrite the user's preset of the same name in any letter case.

        The name keeps the spelling of the latest save. Raises ``ValueError`` for an empty name or one
        longer than ``PRESET_NAME_MAX``, and ``LimitExceededError("presets")`` when a new name would make
        more than ``max_presets``; the user must exist (``upsert_user`` first).
        """
        name = name.strip()
        if not name or len(name) > PRESET_NAME_MAX:
            raise ValueError(f"a preset name has 1 to {PRESET_NAME_MAX} characters")
        now = utcnow()
        stmt = self._insert(Preset).values(
            platform=platform,
            user_id=user_id,
            name=name,
            name_key=preset_key(name),
            styles=list(styles),
            settings=dict(settings),
            created_at=now,
            updated_at=now,
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[Preset.platform, Preset.user_id, Preset.name_key],
            set_={
                "name": stmt.excluded.name,
                "styles": stmt.excluded.styles,
                "settings": stmt.excluded.settings,
                "updated_at": stmt.excluded.updated_at,
            },
        )
        if max_presets is None:
            return _preset(await self._upsert(stmt, Preset))
        mine = (Preset.platform == platform, Preset.user_id == user_id)
        user_row = select(User.id).where(User.platform == platform, User.id == user_id).with_for_update()
        async with self._serialized(user_row) as session:
            existing = await session.scalar(
                select(Preset.id).where(*mine, Preset.name_key == preset_key(name))
            )
            count = int(await session.scalar(select(func.count()).where(*mine)) or 0)
            if existing is None and count >= max_presets:
                raise LimitExceededError("presets", count)
            result = await session.scalars(
                stmt.returning(Preset), execution_options={"populate_existing": True}
            )
            return _preset(result.one())

    async def get_preset(self, user_id: int, name: str, *, platform: str) -> PresetRecord | None:
        stmt = select(Preset).where(
            Preset.platform == platform, Preset.user_id == user_id, Preset.name_key == preset_key(name)
        )
        async with self.session() as session:
            row = (await session.scalars(stmt)).first()
            return None if row is None else _preset(row)

    async def list_presets(self, user_id: int, *, platform: str) -> list[PresetRecord]:
        """The user's presets in name order (case-insensitive)."""
        stmt = (
            select(Preset)
            .where(Preset.platform == platform, Preset.user_id == user_id)
            .order_by(Preset.name_key)
        )
        async with self.session() as session:
            return [_preset(row) for row in await session.scalars(stmt)]

    async def delete_preset(self, user_id: int, name: str, *, platform: str) -> bool:
        stmt = delete(Preset).where(
            Preset.platform == platform, Preset.user_id == user_id, Preset.name_key == preset_key(name)
        )
        async with self.session() as session:
            result = await session.execute(stmt)
            return result.rowcount > 0  # type: ignore[attr-defined]

    async def count_presets(self, user_id: int, *, platform: str) -> int:
        stmt = (
            select(func.count())
            .select_from(Preset)
            .where(Preset.platform == platform, Preset.user_id == user_id)
        )
        async with self.session() as session:
            return int(await session.scalar(stmt) or 0)


async def _check_job_limits(
    session: AsyncSession, platform: str, user_id: int, limits: JobLimits, weight: float
) -> None:
    """Per person (a platform's user), and the queue that every platform shares; each limit counts jobs
    by their weight (a strip may count as several), the new job's included. A heavy job alone is never
    refused (it could never run otherwise), but it cannot join others past a limit."""

    def count(*where: ColumnElement[bool]) -> Any:
        return select(func.coalesce(func.sum(Job.weight), 0)).where(*where)

    def over(already: float, limit: int) -> bool:
        return already > 0 and already + weight > limit

    user = (Job.platform == platform, Job.user_id == user_id)
    active = float(await session.scalar(count(*user, Job.state.in_(_states(JobState.ACTIVE)))))
    if over(active, limits.max_active):
        raise LimitExceededError("active", int(active))
    recent = (*user, Job.created_at >= utcnow() - HOUR)
    hourly = float(await session.scalar(count(*recent)))
    if over(hourly, limits.max_per_hour):
        oldest = await session.scalar(select(func.min(Job.created_at)).where(*recent))
        raise LimitExceededError("hourly", int(hourly), oldest)
    queued = float(await session.scalar(count(Job.state == JobState.QUEUED.value)))
    if over(queued, limits.max_queued):
        raise LimitExceededError("queue_full", int(queued))


class ChatDefaultsRepository(_Repository):
    async def get_chat_defaults(self, chat_id: int, *, platform: str) -> ChatDefaultsRecord | None:
        async with self.session() as session:
            row = await session.get(ChatDefaults, (platform, chat_id))
            return None if row is None else _chat(row)

    async def set_chat_defaults(
        self,
        chat_id: int,
        styles: Sequence[dict[str, Any]] | None,
        settings: dict[str, Any],
        updated_by: int | None,
        *,
        platform: str,
    ) -> ChatDefaultsRecord:
        """Replace the chat's defaults as a whole (``styles=None``: no default painting)."""
        stmt = self._insert(ChatDefaults).values(
            platform=platform,
            chat_id=chat_id,
            styles=None if styles is None else list(styles),
            settings=dict(settings),
            updated_by=updated_by,
            updated_at=utcnow(),
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[ChatDefaults.platform, ChatDefaults.chat_id],
            set_={
                "styles": stmt.excluded.styles,
                "settings": stmt.excluded.settings,
                "updated_by": stmt.excluded.updated_by,
                "updated_at": stmt.excluded.updated_at,
            },
        )
        return _chat(await self._upsert(stmt, ChatDefaults))

    async def clear_chat_defaults(self, chat_id: int, *, platform: str) -> bool:
        """Forget the chat's defaults; ``False`` if it had none."""
        stmt = delete(ChatDefaults).where(ChatDefaults.platform == platform, ChatDefaults.chat_id == chat_id)
        async with self.session() as session:
            result = await session.execute(stmt)
            return result.rowcount > 0  # type: ignore[attr-defined]


class ChatMoveRepository(_Repository):
    async def move_chat(self, platform: str, old_chat_id: int, new_chat_id: int) -> ChatMove:
        """Everything kept under a chat's id, moved to its new id in one transaction (a Telegram group
        that became a supergroup): its jobs in any state, its default style and settings, the bot's
        being switched off there, and the chat as a sender (a group's anonymous admins write as the
        group: their jobs, settings, presets, style images, a block). What the new id has already
        stays (a preset name or default set there since); the rest of the old id's goes.

        The old chat's message ids name nothing in the new one: a moved job keeps no status message and
        quotes no source (``NO_MESSAGE``). Idempotent: a second call finds nothing left to move.

        Moves take turns, in this process or any other (a lock from the first statement): Telegram's two
        service messages of one upgrade arrive together, and a second move that read the old chat before
        the first committed would create the new sender row twice."""
        if old_chat_id == new_chat_id:
            return ChatMove((), False, False, False)
        async with self._serialized(select(func.pg_advisory_xact_lock(CHAT_MOVE_LOCK_KEY))) as session:
            moved = await session.execute(
                update(Job)
                .where(Job.platform == platform, Job.chat_id == old_chat_id)
                .values(chat_id=new_chat_id, source_message_id=NO_MESSAGE, status_message_id=None)
                .returning(Job.id, Job.state)
            )
            states: dict[int, str] = {job: state for job, state in moved}
            jobs = tuple(sorted(states))
            active = tuple(job for job in jobs if states[job] in _states(JobState.ACTIVE))
            await session.execute(
                update(Job)
                .where(Job.platform == platform, Job.guild_id == old_chat_id)
                .values(guild_id=new_chat_id)
            )
            defaults = await _move_row(session, ChatDefaults.chat_id, platform, old_chat_id, new_chat_id)
            switched_off = await _move_row(session, DisabledChat.chat_id, platform, old_chat_id, new_chat_id)
            sender = await _move_sender(session, self._insert(User), platform, old_chat_id, new_chat_id)
            return ChatMove(jobs, defaults, switched_off, sender, active)


async def _move_row(session: AsyncSession, key: Any, platform: str, old: int, new: int) -> bool:
    """The row of a table keyed by (platform, ``key``) moved from ``old`` to ``new``, unless ``new`` has
    one (then the old one goes); False when ``old`` had none."""
    table = key.class_
    here = (table.platform == platform, key == old)
    if await session.scalar(select(exists().where(*here))) is False:
        return False
    if await session.scalar(select(exists().where(table.platform == platform, key == new))):
        await session.execute(delete(table).where(*here))
    else:
        await session.execute(update(table).where(*here).values({key.key: new}))
    return True


async def _move_sender(session: AsyncSession, insert_user: Any, platform: str, old: int, new: int) -> bool:
    """The chat as a sender (``users`` row ``old``) becomes ``new``: its jobs, block, presets (but names
    ``new`` has) and style images; its settings where ``new`` has none. False when ``old`` sent nothing.
    ``new``'s row is inserted unless it exists (``insert_user``: the back end's INSERT ... ON CONFLICT), so
    the new chat writing as a sender at the same moment is no duplicate key."""
    jobs = await session.execute(
        update(Job).where(Job.platform == platform, Job.user_id == old).values(user_id=new)
    )
    blocked = await _move_row(session, BlockedUser.user_id, platform, old, new)
    user = await session.get(User, (platform, old))
    if user is None:
        return bool(jobs.rowcount) or blocked  # type: ignore[attr-defined]
    await session.execute(
        insert_user.values(
            platform=platform,
            id=new,
            username=user.username,
            first_name=user.first_name,
            language_code=user.language_code,
            settings=dict(user.settings or {}),
            created_at=user.created_at,
            last_seen_at=user.last_seen_at,
        ).on_conflict_do_nothing(index_elements=[User.platform, User.id])
    )
    heir = await session.get(User, (platform, new), populate_existing=True)
    assert heir is not None  # inserted now or before
    if not heir.settings:
        heir.settings = dict(user.settings or {})
    await session.flush()  # the heir's row exists before its presets and images point at it
    taken = select(Preset.name_key).where(Preset.platform == platform, Preset.user_id == new)
    await session.execute(
        update(Preset)
        .where(Preset.platform == platform, Preset.user_id == old, Preset.name_key.not_in(taken))
        .values(user_id=new)
    )
    await session.execute(
        update(StyleImage)
        .where(StyleImage.platform == platform, StyleImage.user_id == old)
        .values(user_id=new)
    )
    await session.execute(delete(Preset).where(Preset.platform == platform, Preset.user_id == old))
    await session.execute(delete(User).where(User.platform == platform, User.id == old))
    return True


class JobRepository(_Repository):
    async def create_job(
        self,
        *,
        user_id: int,
        chat_id: int,
        chat_type: str,
        language_code: str | None,
        source_message_id: int,
        styles: Sequence[dict[str, Any]],
        style_label: str,
        settings: dict[str, Any],
        content_path: str,
        style_paths: Sequence[str] = (),
        status_message_id: int | None = None,
        max_attempts: int = 2,
        limits: JobLimits | None = None,
        weight: float = 1.0,
        platform: str,
        guild_id: int | None = None,
        clip: dict[str, Any] | None = None,
        request_key: str | None = None,
    ) -> JobRecord:
        """Store a new job in state ``queued``; with ``limits``, only if it breaks none of them (else
        ``LimitExceededError``), checked and inserted as one step. ``weight``: how many ordinary jobs it
        counts as in the limits, its own weight included (a heavy job alone always gets in).
        ``request_key``: what asked for it on its platform; a key that made a job already raises
        ``RequestMadeError`` with that job, before any limit is checked (the repeat is not a new job),
        and the unique index makes two handlings of one request at once end the same way."""
        row = Job(
            platform=platform,
            user_id=user_id,
            chat_id=chat_id,
            request_key=request_key,
            guild_id=guild_id,
            chat_type=chat_type,
            language_code=language_code,
            source_message_id=source_message_id,
            status_message_id=status_message_id,
            state=JobState.QUEUED.value,
            styles=list(styles),
            style_label=style_label,
            settings=dict(settings),
            content_path=str(content_path),
            style_paths=[str(p) for p in style_paths],
            attempts=0,
            max_attempts=max_attempts,
            weight=weight,
            clip=None if clip is None else dict(clip),
            created_at=utcnow(),
        )
        try:
            return await self._add_job(row, limits)
        except IntegrityError:
            made = None if request_key is None else await self.job_for_request(platform, request_key)
            if made is None:
                raise
            raise RequestMadeError(made) from None

    async def _add_job(self, row: Job, limits: JobLimits | None) -> JobRecord:
        lock = None if limits is None else select(func.pg_advisory_xact_lock(JOB_LOCK_KEY))
        async with self.session() if lock is None else self._serialized(lock) as session:
            if row.request_key is not None:
                made = await session.scalar(
                    select(Job).where(Job.platform == row.platform, Job.request_key == row.request_key)
                )
                if made is not None:
                    raise RequestMadeError(_job(made))
            if limits is not None:
                await _check_job_limits(session, row.platform, row.user_id, limits, row.weight)
            session.add(row)
            await session.flush()
            return _job(row)

    async def get_job(self, job_id: int) -> JobRecord | None:
        """The job, or ``None`` for an unknown id, including one no row can have (a forged button's)."""
        if not 0 < job_id <= MAX_JOB_ID:
            return None
        async with self.session() as session:
            row = await session.get(Job, job_id)
            return None if row is None else _job(row)

    async def job_for_request(self, platform: str, request_key: str) -> JobRecord | None:
        """The job a platform's request made (``create_job``'s ``request_key``), if any."""
        stmt = select(Job).where(Job.platform == platform, Job.request_key == request_key)
        async with self.session() as session:
            row = (await session.scalars(stmt)).first()
            return None if row is None else _job(row)

    async def _jobs(
        self, *where: ColumnElement[bool], newest_first: bool = False, limit: int | None = None
    ) -> list[JobRecord]:
        order = (Job.created_at.desc(), Job.id.desc()) if newest_first else (Job.created_at, Job.id)
        stmt = select(Job).where(*where).order_by(*order).limit(limit)
        async with self.session() as session:
            return [_job(row) for row in await session.scalars(stmt)]

    async def _count(self, *where: ColumnElement[bool]) -> int:
        async with self.session() as session:
            return int(await session.scalar(select(func.count()).select_from(Job).where(*where)) or 0)

    async def active_jobs(self, user_id: int, *, platform: str) -> list[JobRecord]:
        """One person's queued and running jobs, oldest first."""
        return await self._jobs(
            Job.state.in_(_states(JobState.ACTIVE)), Job.platform == platform, Job.user_id == user_id
        )

    async def queued_and_running(self) -> list[JobRecord]:
        """Every active job of every platform, oldest first: what the scheduler orders its queue from."""
        return await self._jobs(Job.state.in_(_states(JobState.ACTIVE)))

    async def finished_since(self, since: datetime) -> list[JobRecord]:
        """Jobs ``done`` at or after ``since``: their inputs are kept for painting them again."""
        return await self._jobs(Job.state == JobState.DONE.value, Job.finished_at >= since)

    async def styles_used(self, user_id: int, *, platform: str) -> list[list[dict[str, Any]]]:
        """The ``styles`` of every job the user ever asked for, oldest first (for "Surprise me")."""
        stmt = (
            select(Job.styles)
            .where(Job.platform == platform, Job.user_id == user_id)
            .order_by(Job.created_at, Job.id)
        )
        async with self.session() as session:
            return [list(styles or []) for styles in await session.scalars(stmt)]

    async def count_active(self, user_id: int, *, platform: str) -> int:
        return await self._count(
            Job.platform == platform, Job.user_id == user_id, Job.state.in_(_states(JobState.ACTIVE))
        )

    async def count_created_since(self, user_id: int, since: datetime, *, platform: str) -> int:
        """Jobs the user created at or after ``since`` (aware), whatever became of them: rate limits."""
        if since.tzinfo is None or since.utcoffset() is None:
            raise ValueError("count_created_since needs an aware datetime")
        return await self._count(Job.platform == platform, Job.user_id == user_id, Job.created_at >= since)

    async def jobs_to_recover(self) -> list[JobRecord]:
        """Jobs left ``running``, e.g. by a worker or a bot that died; oldest first."""
        return await self._jobs(Job.state == JobState.RUNNING.value)

    async def typical_job_seconds(self, limit: int = 20) -> float | None:
        """Median engine time per unit of weight of the last ``limit`` finished jobs: the unit of the
        queue's time estimates (a job of weight 2 is expected to take two of them). Only paintings: a job
        settled with its sketch (``SKETCH_WORKER``) or of the ``instant`` tier takes a fraction of a second
        and says nothing of how long a queued painting waits."""
        quality = Job.settings["quality"].as_string()
        stmt = (
            select(Job.engine_seconds / Job.weight)
            .where(
                Job.state == JobState.DONE.value,
                Job.engine_seconds.is_not(None),
                or_(Job.worker.is_(None), Job.worker != SKETCH_WORKER),
                or_(quality.is_(None), quality != INSTANT_QUALITY),
            )
            .order_by(Job.finished_at.desc())
            .limit(limit)
        )
        async with self.session() as session:
            values = sorted(float(v) for v in await session.scalars(stmt) if v is not None)
        return values[len(values) // 2] if values else None

    async def recent_jobs(self, user_id: int, limit: int = 10, *, platform: str) -> list[JobRecord]:
        """The user's latest jobs in any state, newest first."""
        return await self._jobs(
            Job.platform == platform, Job.user_id == user_id, newest_first=True, limit=limit
        )

    async def delivered_jobs(
        self, user_id: int, *, platform: str, since: datetime, limit: int
    ) -> list[JobRecord]:
        """The person's results the platform confirmed (a file id kept), finished at or after ``since``,
        newest first: what Telegram's inline mode offers again (``bot.services.sharing``)."""
        return await self._jobs(
            Job.platform == platform,
            Job.user_id == user_id,
            Job.state == JobState.DONE.value,
            Job.result_file_id.is_not(None),
            Job.result_file_id != "",
            Job.result_removed_at.is_(None),  # deleted under its message: offered nowhere again
            Job.finished_at >= since,
            newest_first=True,
            limit=limit,
        )

    async def _transition(
        self, job_id: int, from_states: Iterable[JobState], *where: ColumnElement[bool], **values: Any
    ) -> JobRecord | None:
        """Change the job only if it is still in one of ``from_states`` (and matches ``where``); one
        atomic statement."""
        stmt = (
            update(Job)
            .where(Job.id == job_id, Job.state.in_(_states(from_states)), *where)
            .values(**values)
            .returning(Job)
        )
        async with self.session() as session:
            row = (await session.scalars(stmt, execution_options={"populate_existing": True})).first()
            return None if row is None else _job(row)

    async def _touch(self, job_id: int, *where: ColumnElement[bool], **values: Any) -> bool:
        async with self.session() as session:
            result = await session.execute(update(Job).where(Job.id == job_id, *where).values(**values))
            return result.rowcount > 0  # type: ignore[attr-defined]

    async def claim_job(self, job_id: int, worker: str) -> JobRecord | None:
        """queued → running for ``worker``, counting an attempt; ``None`` if someone else got it first
        or the job was cancelled meanwhile."""
        now = utcnow()
        return await self._transition(
            job_id,
            [JobState.QUEUED],
            state=JobState.RUNNING.value,
            worker=worker,
            attempts=Job.attempts + 1,
            started_at=now,
            heartbeat_at=now,
            progress=0.0,
            eta_seconds=None,
        )

    async def record_progress(self, job_id: int, progress: float, eta_seconds: float | None) -> bool:
        """Store progress (clamped to 0..1) and the heartbeat; ``False`` unless the job is running."""
        return await self._touch(
            job_id,
            Job.state == JobState.RUNNING.value,
            progress=min(1.0, max(0.0, float(progress))),
            eta_seconds=eta_seconds,
            heartbeat_at=utcnow(),
        )

    async def set_status_message(
        self, job_id: int, message_id: int | None, *, chat_id: int | None = None
    ) -> bool:
        """Remember the bot's status message, in any state (it is edited when the job ends, too).
        ``chat_id``: the chat it was sent to; nothing is remembered when the job is no longer there (a
        Telegram group that became a supergroup meanwhile: the id names nothing, or another message, in
        the new chat). ``False`` when nothing was remembered."""
        where = () if chat_id is None else (Job.chat_id == chat_id,)
        return await self._touch(job_id, *where, status_message_id=message_id)

    async def record_result_file(self, job_id: int, file_id: str) -> bool:
        """Remember what the platform confirmed sending (Telegram: the result's file id; Discord: the
        message id): the job is delivered. Only a finished job has one."""
        return await self._touch(job_id, Job.state == JobState.DONE.value, result_file_id=file_id)

    async def give_up_delivery(self, job_id: int, reason: str) -> bool:
        """The platform said this finished job's result can never be delivered: it is not sent again.
        ``True`` only the first time, so that it is counted and logged once; ``False`` once delivered."""
        return await self._touch(
            job_id,
            Job.state == JobState.DONE.value,
            Job.result_file_id.is_(None),
            Job.delivery_given_up_at.is_(None),
            delivery_given_up_at=utcnow(),
            delivery_given_up_reason=reason[:GIVE_UP_REASON_MAX],
        )

    async def mark_result_removed(self, job_id: int) -> bool:
        """A finished job's result was deleted (``bot.services.moderation``): nothing offers it again (the
        platform's copy included, which inline mode would otherwise list). ``True`` the first time only."""
        return await self._touch(
            job_id,
            Job.state == JobState.DONE.value,
            Job.result_removed_at.is_(None),
            result_removed_at=utcnow(),
        )

    async def undelivered_jobs(self, since: datetime) -> list[JobRecord]:
        """Jobs finished since ``since`` whose result never reached its platform (the bot stopped between,
        the platform was unreachable), leaving out those given up."""
        return await self._jobs(
            Job.state == JobState.DONE.value,
            Job.result_file_id.is_(None),
            Job.delivery_given_up_at.is_(None),
            Job.finished_at >= since,
        )

    async def set_external_id(self, job_id: int, external_id: str | None) -> bool:
        """Remember the Celery task id, in any state, so a cancelled job's task can still be revoked."""
        return await self._touch(job_id, external_id=external_id)

    async def finish_job(
        self,
        job_id: int,
        *,
        result_file_id: str | None = None,
        width: int | None = None,
        height: int | None = None,
        engine_seconds: float | None = None,
        worker: str | None = None,
    ) -> JobRecord | None:
        """running → done; ``None`` if the job is not running (a late result of a cancelled job), or
        ``worker`` is given and no longer holds it."""
        return await self._transition(
            job_id,
            [JobState.RUNNING],
            *_held_by(worker),
            state=JobState.DONE.value,
            result_file_id=result_file_id,
            result_width=width,
            result_height=height,
            engine_seconds=engine_seconds,
            progress=1.0,
            eta_seconds=None,
            finished_at=utcnow(),
        )

    async def fail_job(self, job_id: int, code: str, message: str | None = None) -> JobRecord | None:
        """queued or running → failed (a job can fail before it starts, e.g. a lost photo)."""
        return await self._transition(
            job_id,
            JobState.ACTIVE,
            state=JobState.FAILED.value,
            error_code=code,
            error_message=message,
            eta_seconds=None,
            finished_at=utcnow(),
        )

    async def cancel_job(self, job_id: int) -> JobRecord | None:
        """queued or running → cancelled; ``None`` if the job had already ended (or does not exist)."""
        return await self._transition(
            job_id,
            JobState.ACTIVE,
            state=JobState.CANCELLED.value,
            eta_seconds=None,
            finished_at=utcnow(),
        )

    async def requeue_job(
        self,
        job_id: int,
        reason: str | None = None,
        *,
        give_back_attempt: bool = False,
        worker: str | None = None,
    ) -> JobRecord | None:
        """running → queued, e.g. after a worker died. ``attempts`` is kept, so the caller can compare it
        with ``max_attempts`` and fail the job instead; the reason lands in ``error_message``.
        ``give_back_attempt``: the bot or the worker stopped, not because of the job, so the attempt its
        claim counted is given back. ``worker``: only while that worker still holds the job."""
        attempts = (
            {"attempts": case((Job.attempts > 0, Job.attempts - 1), else_=0)} if give_back_attempt else {}
        )
        return await self._transition(
            job_id,
            [JobState.RUNNING],
            *_held_by(worker),
            state=JobState.QUEUED.value,
            worker=None,
            external_id=None,
            progress=None,
            eta_seconds=None,
            started_at=None,
            heartbeat_at=None,
            error_message=reason,
            **attempts,
        )


class StyleImageRepository(_Repository):
    async def add_style_image(
        self,
        platform: str,
        user_id: int,
        name: str,
        *,
        file_id: str | None = None,
        data: bytes | None = None,
        keep: int | None = None,
    ) -> StyleImageRecord:
        """Keep a personal style picture: a Telegram file id, or the image's bytes (Discord). ``keep``: the
        user keeps only that many, the newest (each may hold megabytes: a user cannot grow the database
        without bound)."""
        if (file_id is None) == (data is None):
            raise ValueError("a style image is kept by file id or by its bytes, one of the two")
        row = StyleImage(
            platform=platform, user_id=user_id, name=name[:PRESET_NAME_MAX], file_id=file_id, data=data
        )
        async with self.session() as session:
            session.add(row)
            await session.flush()
            if keep is not None:
                newest = (
                    select(StyleImage.id)
                    .where(StyleImage.platform == platform, StyleImage.user_id == user_id)
                    .order_by(StyleImage.id.desc())
                    .limit(keep)
                )
                await session.execute(
                    delete(StyleImage).where(
                        StyleImage.platform == platform,
                        StyleImage.user_id == user_id,
                        StyleImage.id.not_in(newest.scalar_subquery()),
                    )
                )
            return _record(StyleImageRecord, row)

    async def list_style_images(self, platform: str, user_id: int) -> list[StyleImageRecord]:
        """The user's personal styles, newest first, without their bytes (autocomplete lists them on every
        keystroke; ``get_style_image`` brings one whole)."""
        columns = [c for c in StyleImage.__table__.c if c.name != "data"]
        stmt = (
            select(*columns)
            .where(StyleImage.platform == platform, StyleImage.user_id == user_id)
            .order_by(StyleImage.id.desc())
        )
        async with self.session() as session:
            return [StyleImageRecord(**row._mapping, data=None) for row in await session.execute(stmt)]

    async def get_style_image(self, platform: str, user_id: int, image_id: int) -> StyleImageRecord | None:
        """One of the user's own personal styles; ``None`` for another user's (ids are easy to guess)."""
        if not 0 < image_id <= MAX_JOB_ID:
            return None
        async with self.session() as session:
            row = await session.get(StyleImage, image_id)
            if row is None or row.platform != platform or row.user_id != user_id:
                return None
            return _record(StyleImageRecord, row)


class ModerationRepository(_Repository):
    """Who is blocked and where the bot is switched off; each change says whether it changed anything, so
    that a second /block or /bot_off can say "already"."""

    async def block_user(self, platform: str, user_id: int, *, by: int | None) -> bool:
        """``False`` if the person was blocked already (the first block's time and admin stay)."""
        stmt = self._insert(BlockedUser).values(
            platform=platform, user_id=user_id, blocked_by=by, blocked_at=utcnow()
        )
        async with self.session() as session:
            result = await session.execute(stmt.on_conflict_do_nothing())
            return result.rowcount > 0  # type: ignore[attr-defined]

    async def unblock_user(self, platform: str, user_id: int) -> bool:
        """``False`` if the person was not blocked."""
        stmt = delete(BlockedUser).where(BlockedUser.platform == platform, BlockedUser.user_id == user_id)
        async with self.session() as session:
            result = await session.execute(stmt)
            return result.rowcount > 0  # type: ignore[attr-defined]

    async def is_blocked(self, platform: str, user_id: int) -> bool:
        async with self.session() as session:
            return await session.get(BlockedUser, (platform, user_id)) is not None

    async def count_blocked(self) -> int:
        async with self.session() as session:
            return int(await session.scalar(select(func.count()).select_from(BlockedUser)) or 0)

    async def set_chat_enabled(self, platform: str, chat_id: int, enabled: bool, *, by: int | None) -> bool:
        """Switch the bot on or off in a group or server; ``False`` if it already was."""
        async with self.session() as session:
            if enabled:
                stmt = delete(DisabledChat).where(
                    DisabledChat.platform == platform, DisabledChat.chat_id == chat_id
                )
                result = await session.execute(stmt)
            else:
                insert = self._insert(DisabledChat).values(
                    platform=platform, chat_id=chat_id, disabled_by=by, disabled_at=utcnow()
                )
                result = await session.execute(insert.on_conflict_do_nothing())
            return result.rowcount > 0  # type: ignore[attr-defined]

    async def is_chat_enabled(self, platform: str, chat_id: int) -> bool:
        async with self.session() as session:
            return await session.get(DisabledChat, (platform, chat_id)) is None


class StatsRepository(_Repository):
    """The counts behind the admins' statistics (``bot.services.stats``), each one query."""

    async def job_outcomes(self, since: datetime) -> dict[str, int]:
        """How the jobs created since ``since`` stand: their count per state (active ones included)."""
        stmt = select(Job.state, func.count()).where(Job.created_at >= since).group_by(Job.state)
        async with self.session() as session:
            return {state: int(count) for state, count in await session.execute(stmt)}

    async def count_given_up(self, since: datetime) -> int:
        """Results given up (``give_up_delivery``) since ``since``."""
        return await self._count_jobs(Job.delivery_given_up_at >= since)

    async def _count_jobs(self, *where: ColumnElement[bool]) -> int:
        async with self.session() as session:
            return int(await session.scalar(select(func.count()).select_from(Job).where(*where)) or 0)

    async def median_wait_seconds(self, since: datetime) -> float | None:
        """The median time from a job's creation to its start, of the jobs a painter started since
        ``since`` (the sketch's own, which start at once, left out); None when none started. Computed
        by the database (the middle rows in order), so a busy week costs two small queries."""
        if self.dialect_name == "sqlite":
            wait = (func.julianday(Job.started_at) - func.julianday(Job.created_at)) * 86400.0
        else:
            wait = extract("epoch", Job.started_at - Job.created_at)
        where = (
            Job.started_at.is_not(None),
            Job.started_at >= since,
            or_(Job.worker.is_(None), Job.worker != SKETCH_WORKER),
        )
        async with self.session() as session:
            count = int(await session.scalar(select(func.count()).select_from(Job).where(*where)) or 0)
            if count == 0:
                return None
            middle = select(wait).where(*where).order_by(wait).offset((count - 1) // 2)
            values = [float(v) for v in await session.scalars(middle.limit(2 - count % 2))]
        return max(0.0, sum(values) / len(values))


__all__ = [
    "ChatDefaultsRepository",
    "ChatMoveRepository",
    "JobLimits",
    "JobRepository",
    "LimitExceededError",
    "ModerationRepository",
    "PresetRepository",
    "RequestMadeError",
    "StatsRepository",
    "StyleImageRepository",
    "UserRepository",
    "preset_key",
]
