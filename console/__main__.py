"""python -m console: serve the staff console (JJ_CONSOLE_HOST:JJ_CONSOLE_PORT)."""
from __future__ import annotations

import logging
import sys

from aiohttp import web

from .app import make_app
from .settings import ConsoleConfigError, ConsoleSettings


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = ConsoleSettings.from_env()
    except ConsoleConfigError as exc:
        print(f"console: configuration error: {exc}", file=sys.stderr)
        return 2
    web.run_app(make_app(settings), host=settings.host, port=settings.port, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
