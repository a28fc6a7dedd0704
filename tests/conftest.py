"""Settings every test process shares."""

from __future__ import annotations

import os

# No test downloads the bundled catalog's paintings from the internet: processes the tests start (Celery
# workers, the CLI) inherit this. Tests of the background fetch turn it on with their own local server.
os.environ.setdefault("STYLES_PREFETCH", "off")
