"""Where a job's result is kept: ``DATA_DIR/results/<job id>.<suffix>``, the one rule for everyone who looks.

The queue's ledger writes it (``bot.queue.ledger``: the name comes from the job id and the checked format
only): a photo's painting as PNG or JPEG, with a photo's animation of the painting beside it as GIF; a
clip as MP4 or GIF. The notifier sends it (and sends again what was not confirmed), inline mode lists
only jobs whose result is still here, and Delete removes every file of it; they all ask here, so a new
format (as clips were) is added once.
"""

from __future__ import annotations

from pathlib import Path

from bot.db import JobRecord

# The result's own file, by the job's kind, in the order looked for.
RESULT_SUFFIXES = {"photo": ("png", "jpg"), "clip": ("mp4", "gif")}
ANIMATION_SUFFIX = "gif"  # a photo's animation of its painting, kept beside the painting


def result_path(results_dir: Path, job: JobRecord) -> Path | None:
    """The job's result file, if it is still kept (None: not painted, deleted, or past retention)."""
    for suffix in RESULT_SUFFIXES[job.kind]:
        path = results_dir / f"{job.id}.{suffix}"
        if path.is_file():
            return path
    return None


def result_files(results_dir: Path, job: JobRecord) -> list[Path]:
    """Every file kept of the job's result (its result and a photo's animation), for Delete."""
    suffixes = {*RESULT_SUFFIXES[job.kind], ANIMATION_SUFFIX}
    return [path for s in sorted(suffixes) if (path := results_dir / f"{job.id}.{s}").is_file()]
