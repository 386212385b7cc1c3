"""rasa_sdk's action server (`rasa run actions ...`), with the actions' objects frozen once loaded.

Once the actions package is imported, what is alive (rasa_sdk, SQLAlchemy, the actions' modules)
lives as long as the server. Every full collection walked all of it: 80-90 ms with the event loop
stopped, every 45 s or so under load, for every action call in flight at once. `gc.freeze` after
registration moves those objects out of the collector's sight; what later requests allocate is
collected as before.

    python -m scripts.action_server --actions actions --port 5055   # the same arguments as rasa_sdk's
"""
from __future__ import annotations

import sys
from typing import Any

from scripts.rasa_server import freeze_what_is_alive


def freeze_after_registration() -> None:
    from rasa_sdk.executor import ActionExecutor

    register = ActionExecutor.register_package

    def register_package(self: ActionExecutor, package: Any) -> None:
        register(self, package)
        freeze_what_is_alive()

    ActionExecutor.register_package = register_package


def main() -> None:
    freeze_after_registration()
    from rasa_sdk.__main__ import main as sdk_main

    sys.argv[0] = "rasa_sdk"
    sdk_main()


if __name__ == "__main__":
    main()
