"""The README stays true: every setting is documented, and the two set-up commands are there."""

from __future__ import annotations

import re
from pathlib import Path

from bot.config import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table() -> None:
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", README, re.MULTILINE))
    settings = {name.upper() for name in Settings.model_fields}
    assert settings - documented == set(), "settings missing from README.md"
    assert documented - settings == set(), "README.md documents settings that do not exist"


def test_quick_start_is_make_run_and_make_test() -> None:
    assert "make run" in README
    assert "make test" in README
