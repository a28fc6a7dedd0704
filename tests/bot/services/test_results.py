"""Where a job's result is kept (``bot.services.results``): one rule for the notifier, inline mode and
Delete, photos and clips alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.db import JobRecord
from bot.services.results import result_files, result_path


class Job:
    """The two fields the rule reads."""

    def __init__(self, job_id: int, kind: str) -> None:
        self.id, self.kind = job_id, kind


def kept(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).write_bytes(b"x")


@pytest.mark.parametrize(
    ("kind", "files", "found"),
    [
        ("photo", ["4.png", "4.gif"], "4.png"),
        ("photo", ["4.jpg"], "4.jpg"),
        ("photo", ["4.gif"], None),  # a photo's animation is not its result
        ("clip", ["4.mp4"], "4.mp4"),
        ("clip", ["4.gif"], "4.gif"),
        ("clip", ["4.png", "41.mp4"], None),  # another job's file, and no clip's
    ],
)
def test_the_result_file_of_a_photo_or_a_clip(
    tmp_path: Path, kind: str, files: list[str], found: str | None
) -> None:
    kept(tmp_path, *files)
    path = result_path(tmp_path, Job(4, kind))  # type: ignore[arg-type]  # a stand-in record
    assert (path.name if path else None) == found


def test_delete_finds_every_file_of_the_result_and_no_other(tmp_path: Path) -> None:
    kept(tmp_path, "4.png", "4.gif", "4.mp4", "41.png", "4.png.tmp")
    photo: JobRecord = Job(4, "photo")  # type: ignore[assignment]
    clip: JobRecord = Job(4, "clip")  # type: ignore[assignment]
    assert [p.name for p in result_files(tmp_path, photo)] == ["4.gif", "4.png"]
    assert [p.name for p in result_files(tmp_path, clip)] == ["4.gif", "4.mp4"]
