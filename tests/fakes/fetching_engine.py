"""The fast fake engine that gets its paintings as the real one does: ``StyleStore.ensure`` with the
``STYLES_FETCH_SECONDS`` deadline, from the catalog file named by ``STYLEBOT_TEST_CATALOG`` (the worker is a
spawned process: the environment is how a test reaches it)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from engine.catalog import load_catalog
from engine.protocol import Progress, StylizeRequest, StylizeResult
from engine.settings import EngineSettings
from engine.style_store import StyleStore
from tests.fakes.engine import FakeEngine

CATALOG_ENV = "STYLEBOT_TEST_CATALOG"


class FetchingEngine(FakeEngine):
    def __init__(self, settings: EngineSettings, *, device: str = "cpu") -> None:
        super().__init__(settings, device=device)
        self.store = StyleStore.from_settings(settings, load_catalog(os.environ[CATALOG_ENV]))

    def stylize(
        self,
        request: StylizeRequest,
        *,
        progress: Callable[[Progress], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> StylizeResult:
        for source in request.styles:
            if source.preset is not None:
                self.store.ensure(source.preset)  # as Engine._load_style does, before any progress
        return super().stylize(request, progress=progress, should_cancel=should_cancel)


def fetching_engine(settings: Any, device: str = "cpu") -> FetchingEngine:
    return FetchingEngine(settings, device=device)
