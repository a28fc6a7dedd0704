"""Settings from the environment, and a readable refusal without a token."""

from __future__ import annotations

import pytest

from bot.config import Settings, load_settings, require_a_front_end


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:abc")
    settings = load_settings()
    assert settings.telegram_api_url == "https://api.telegram.org"
    assert settings.database_url.startswith("sqlite+aiosqlite:///")
    assert settings.queue_url == ""
    assert settings.default_quality == "normal"
    assert settings.admin_ids == frozenset()
    assert settings.jobs_dir == settings.data_dir / "jobs"


def test_values_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:abc")
    monkeypatch.setenv("TELEGRAM_API_URL", "http://127.0.0.1:8081/")
    monkeypatch.setenv("ADMIN_IDS", "11, telegram:22,discord:33, Discord:44")
    monkeypatch.setenv("DEFAULT_QUALITY", "draft")
    monkeypatch.setenv("OUTPUT_MAX_SIDE", "512")
    settings = load_settings()
    assert settings.telegram_api_url == "http://127.0.0.1:8081"
    assert settings.admin_ids == {("telegram", 11), ("telegram", 22), ("discord", 33), ("discord", 44)}
    assert settings.default_quality == "draft"
    assert settings.output_max_side == 512


def test_an_admin_id_of_no_known_platform_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """A typo in ADMIN_IDS (``dicsord:1``) stops the start with the variable named, rather than quietly
    making nobody an admin."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:abc")
    monkeypatch.setenv("ADMIN_IDS", "dicsord:1")
    with pytest.raises(SystemExit) as stopped:
        load_settings()
    assert "ADMIN_IDS" in str(stopped.value)


def test_a_dotenv_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    (tmp_path / ".env").write_text("TELEGRAM_BOT_TOKEN=42:from-dotenv\nMAX_ACTIVE_JOBS=5\n")
    settings = Settings()  # type: ignore[call-arg]
    assert settings.telegram_bot_token.get_secret_value() == "42:from-dotenv"
    assert settings.max_active_jobs == 5


def test_missing_tokens_are_explained(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    monkeypatch.delenv("DISCORD_BOT_TOKEN", raising=False)
    settings = load_settings()
    with pytest.raises(SystemExit, match="neither TELEGRAM_BOT_TOKEN nor DISCORD_BOT_TOKEN is set"):
        require_a_front_end(settings)


@pytest.mark.parametrize(
    ("telegram", "discord", "expected"),
    [("1:x", None, ("telegram",)), (None, "d.x", ("discord",)), ("1:x", "d.x", ("telegram", "discord"))],
)
def test_every_platform_with_a_token_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path, telegram: str | None, discord: str | None, expected: tuple
) -> None:
    monkeypatch.chdir(tmp_path)
    for name, value in (("TELEGRAM_BOT_TOKEN", telegram), ("DISCORD_BOT_TOKEN", discord)):
        if value is None:
            monkeypatch.setenv(name, "")  # empty in .env: not set
        else:
            monkeypatch.setenv(name, value)
    settings = load_settings()
    assert require_a_front_end(settings) == expected
    assert settings.discord_api_url == "https://discord.com/api/v10"
    assert settings.discord_gateway_url == "wss://gateway.discord.gg"


def test_bad_values_are_named(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "1:x")
    monkeypatch.setenv("DEFAULT_QUALITY", "ultra")
    with pytest.raises(SystemExit, match="DEFAULT_QUALITY"):
        load_settings()


@pytest.mark.parametrize(("value", "expected"), [("off", False), ("0", False), ("on", True), ("true", True)])
def test_sketch_settings(monkeypatch: pytest.MonkeyPatch, tmp_path, value: str, expected: bool) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:abc")
    monkeypatch.setenv("SKETCH_PREVIEW", value)
    monkeypatch.setenv("SKETCH_OFFER_MINUTES", "0")
    monkeypatch.setenv("DEFAULT_QUALITY", "instant")
    settings = load_settings()
    assert settings.sketch_preview is expected
    assert (settings.sketch_offer_minutes, settings.default_quality) == (0, "instant")
    assert (settings.sketch_threads, settings.sketch_side) == (2, 512)
