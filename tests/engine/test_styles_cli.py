"""``python -m engine styles``: list, fetch and sheet, with wrong arguments answered by exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from engine.catalog import load_catalog
from engine.styles_cli import main
from tests.engine.conftest import PaintingServer
from tests.fakes import images

REPO = Path(__file__).resolve().parents[2]


def write_catalog(path: Path, urls: dict[str, str]) -> Path:
    """A catalog file with one preset per id, downloading from the given address."""
    entries = [
        f'[[preset]]\nid = "{preset_id}"\ntitle = "Painting {preset_id}"\nartist = "Test Painter"\n'
        f'year = "1900"\nurl = "{url}"\nlicence = "Made for tests."\n'
        for preset_id, url in urls.items()
    ]
    path.write_text("\n".join(entries))
    return path


def test_list_marks_what_is_on_disk(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "udnie.jpg").write_bytes(images.jpeg(100, 100))
    assert main(["list", "--styles-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    catalog = load_catalog()
    assert len(lines) == len(catalog) + 1
    assert lines[0].split() == ["starry_night", "Vincent", "van", "Gogh", "1889", "The", "Starry", "Night"]
    assert next(line for line in lines if "udnie" in line).startswith("* udnie ")
    assert lines[-1] == f"1 of {len(catalog)} on disk in {tmp_path} (marked *)"


def test_styles_dir_defaults_to_the_engine_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # away from any .env of the checkout
    monkeypatch.setenv("STYLES_DIR", str(tmp_path / "paintings"))
    assert main(["list"]) == 0
    assert (
        capsys.readouterr().out.splitlines()[-1].endswith(f"on disk in {tmp_path / 'paintings'} (marked *)")
    )


def test_fetch_downloads_from_a_custom_catalog(
    tmp_path: Path, painting_server: PaintingServer, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = write_catalog(
        tmp_path / "catalog.toml",
        {
            "one": painting_server.plan("/one.jpg", (200, images.pattern(100, 80), "image/jpeg")),
            "two": painting_server.plan("/two.png", (200, images.png(90, 90), "image/png")),
        },
    )
    styles = tmp_path / "styles"
    args = ["fetch", "--catalog", str(catalog), "--styles-dir", str(styles)]
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out[:2]] == ["[1/2]", "[2/2]"]  # plain lines: not a terminal
    assert {line.split()[1] for line in out[:2]} == {"one", "two"}
    assert out[-1] == f"2 of 2 paintings in {styles}"
    assert sorted(p.name for p in styles.iterdir()) == ["one.jpg", "two.png"]
    assert main([*args, "two"]) == 0  # on disk now: nothing is downloaded again
    assert painting_server.hits == {"/one.jpg": 1, "/two.png": 1}


def test_fetch_reports_each_failure_and_exits_1(
    tmp_path: Path, painting_server: PaintingServer, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = write_catalog(
        tmp_path / "catalog.toml",
        {
            "good": painting_server.plan("/good.jpg", (200, images.pattern(100, 80), "image/jpeg")),
            "broken": painting_server.url("/missing.jpg"),
        },
    )
    assert main(["fetch", "--catalog", str(catalog), "--styles-dir", str(tmp_path / "styles")]) == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "styles: error: could not download 'broken': HTTP 404 (tried 1 address)"
    ]
    assert captured.out.splitlines()[-1] == f"1 of 2 paintings in {tmp_path / 'styles'}"


def test_sheet_writes_an_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "starry_night.jpg").write_bytes(images.jpeg(120, 90))
    output = tmp_path / "out" / "gallery.png"
    assert main(["sheet", "-o", str(output), "--columns", "4", "--styles-dir", str(tmp_path)]) == 0
    with Image.open(output) as sheet:
        assert sheet.format == "PNG"
        assert sheet.width == 4 * 240
    assert capsys.readouterr().out == f"wrote {output} ({sheet.width}x{sheet.height})\n"


def test_sheet_with_an_unknown_extension_fails_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sheet", "-o", str(tmp_path / "gallery.xyz"), "--styles-dir", str(tmp_path)]) == 1
    assert capsys.readouterr().err.startswith(f"styles: error: cannot write {tmp_path / 'gallery.xyz'}")


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        ([], "the following arguments are required"),
        (["paint"], "invalid choice: 'paint'"),
        (["sheet"], "the following arguments are required: -o/--output"),
        (["sheet", "-o", "x.png", "--columns", "0"], "argument --columns: must be at least 1, not 0"),
        (["sheet", "-o", "x.png", "--columns", "many"], "argument --columns: not a whole number: 'many'"),
        (["fetch", "starry nite"], "unknown style 'starry nite'. Did you mean: starry_night?"),
        (["list", "--catalog", "/nonexistent/catalog.toml"], "cannot read the catalog"),
    ],
)
def test_wrong_arguments_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], reason: str
) -> None:
    assert main([*argv, "--styles-dir", str(tmp_path)] if argv else argv) == 2
    last_line = capsys.readouterr().err.splitlines()[-1]
    assert last_line.startswith("python -m engine styles") or last_line.startswith("styles: error:")
    assert reason in last_line


def test_python_m_engine_styles(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "engine", "styles", "list", "--styles-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "starry_night" in done.stdout
