"""``python -m engine CONTENT STYLE -o OUT``: the round trip, and one-line reasons for wrong input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from engine.cli import main
from tests.engine.samples import checker, painting, photo

REPO = Path(__file__).resolve().parents[2]
FAST = ["--quality", "draft", "--size", "64", "--steps", "4", "-q"]


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STYLE_CACHE_DIR", str(tmp_path / "stats"))
    photo(80, 60).save(tmp_path / "photo.jpg")
    painting().save(tmp_path / "art.png")
    (tmp_path / "styles").mkdir()
    checker().save(tmp_path / "styles" / "great_wave.png")
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_round_trip_with_json_summary(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["photo.jpg", "art.png", "-o", "out/result.png", "--json", *FAST]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["size"] == [64, 48]
    assert summary["steps"] == 4
    assert summary["device"] == "cpu"
    assert set(summary["losses"]) == {"total", "content", "style", "tv"}
    assert summary["seconds"] > 0
    assert Image.open(files / "out" / "result.png").size == (64, 48)


def test_preset_ids_and_blends(files: Path) -> None:
    args = ["photo.jpg", "art.png", "great_wave", "--style-weights", "2", "1", "--styles-dir", "styles"]
    assert main([*args, "-o", "blend.jpg", *FAST]) == 0
    assert Image.open(files / "blend.jpg").format == "JPEG"


def test_save_every_writes_snapshots(files: Path) -> None:
    assert (
        main(["photo.jpg", "art.png", "-o", "r.png", "--save-every", "2", "--save-dir", "snaps", *FAST]) == 0
    )
    assert sorted(p.name for p in (files / "snaps").iterdir()) == ["r_step00002.jpg", "r_step00004.jpg"]


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["missing.jpg", "art.png", "-o", "r.png"], "no such file: missing.jpg"),
        (["photo.jpg", "missing.png", "-o", "r.png"], "no such file: missing.png"),
        (
            ["photo.jpg", "stary_night", "-o", "r.png"],
            "unknown style 'stary_night'. Did you mean: starry_night",
        ),
        (["photo.jpg", "art.png", "-o", "r.gif"], "the output must end in .png, .jpg or .jpeg"),
        (["photo.jpg", "art.png", "-o", "r.png", "--strength", "3"], "strength must be between 0 and 1"),
        (
            ["photo.jpg", "art.png", "-o", "r.png", "--style-weights", "1", "2"],
            "--style-weights needs 1 values",
        ),
        (["photo.jpg", "art.png", "-o", "r.png", "--size", "5"], "size must be between 16 and 4096"),
    ],
)
def test_wrong_arguments_exit_2_with_one_line(
    files: Path, capsys: pytest.CaptureFixture[str], args: list[str], reason: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert reason in err


def test_a_file_that_is_not_an_image_exits_1(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["notes.txt", "art.png", "-o", "r.png", *FAST]) == 1
    assert capsys.readouterr().err.strip() == (
        "error: this is not an image we can read (JPEG, PNG, WebP, GIF, BMP or TIFF)"
    )
    assert not (files / "r.png").exists()


def test_module_entry_point(files: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "engine", "photo.jpg", "art.png", "-o", "r.png", "--json", *FAST],
        cwd=files,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "STYLE_CACHE_DIR": str(files / "stats")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["size"] == [64, 48]


def test_the_command_line_loads_torch_only_to_paint() -> None:
    """Parsing and checking the arguments stays cheap: a wrong argument is answered before torch loads."""
    code = (
        "import sys, engine.__main__, engine.cli, engine.protocol\n"
        "heavy = ('torch', 'torchvision', 'onnxruntime', 'onnx', 'aiohttp')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_painting_run_leaves_out_what_it_does_not_use(files: Path) -> None:
    """No sketch network, no torchvision (Caffe weights), no HTTP client (the painting is a file); and the
    garbage collector, paused while torch loads, is back on."""
    code = (
        "import gc, sys\n"
        "from engine.__main__ import main\n"
        f"assert main(['photo.jpg', 'art.png', '-o', 'r.png', *{FAST!r}]) == 0\n"
        "unused = ('torchvision', 'onnxruntime', 'onnx', 'aiohttp', 'engine.sketch', 'engine.workers')\n"
        "print(sorted(m for m in sys.modules if m in unused or m.split('.')[0] in unused), gc.isenabled())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=files,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "STYLE_CACHE_DIR": str(files / "stats")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[] True"


def run_module(files: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", "photo.jpg", "art.png", *args],
        cwd=files,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "STYLE_CACHE_DIR": str(files / "stats")},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_quality_instant_writes_the_sketch(files: Path) -> None:
    done = run_module(files, "-o", "sketch.jpg", "--quality", "instant", "--json", "-q")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["size"] == [80, 60]  # the tier's 1024 px, capped by the photo's own size
    assert (summary["steps"], summary["losses"], summary["format"], summary["notes"]) == (0, {}, "jpeg", [])
    assert summary["device"] == "cpu"
    assert Image.open(files / "sketch.jpg").size == (80, 60)
    assert list((files / "stats" / "sketch").glob("*.npy"))  # the painting's style vector, cached


def test_init_sketch_runs_the_steps_from_the_sketch(files: Path) -> None:
    done = run_module(
        files, "-o", "r.png", "--init", "sketch", "--steps", "2", "--size", "64", "--json", "-q"
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["size"], summary["steps"]) == ([64, 48], 2)
    assert set(summary["losses"]) == {"total", "content", "style", "tv"}


def test_steps_with_quality_instant_are_ignored_with_a_note(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["photo.jpg", "art.png", "-o", "s.png", "--quality", "instant", "--steps", "9", "--json"]) == 0
    )
    out, err = capsys.readouterr()
    assert json.loads(out)["steps"] == 0
    assert "note: the instant tier makes no optimizer steps: steps=9 ignored" in err


def test_precision_comes_from_the_environment_unless_given(
    files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--precision`` overrides ``ENGINE_PRECISION`` only when given: a default on the command line would
    hide the setting (and ``auto``'s bf16) on every CLI run."""
    import engine.api

    seen: list[object] = []

    class Stop(Exception):
        pass

    def from_settings(settings: object, **overrides: object) -> None:
        seen.append(overrides.get("precision"))
        raise Stop

    monkeypatch.setattr(engine.api.Engine, "from_settings", staticmethod(from_settings))
    for extra, expected in (([], None), (["--precision", "bf16"], "bf16"), (["--precision", "auto"], "auto")):
        with pytest.raises(Stop):
            main(["photo.jpg", "art.png", "-o", "out.png", *extra])
        assert seen[-1] == expected
