"""The action server's shared state, made on first use (never at import)."""
from __future__ import annotations

from typing import Optional

from actions.config import ActionSettings
from actions.records.db import Database

_settings: Optional[ActionSettings] = None
_database: Optional[Database] = None


def settings() -> ActionSettings:
    global _settings
    if _settings is None:
        _settings = ActionSettings.from_env()
    return _settings


def database() -> Database:
    # Created inside the action server's running loop, on the first action that needs it.
    global _database
    if _database is None:
        _database = Database(settings().database_url)
    return _database
