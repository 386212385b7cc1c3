"""The application's shared objects, made on startup."""
from __future__ import annotations

import jinja2
from aiohttp import web

from actions.records.db import Database

from .rasa import RasaClient
from .settings import ConsoleSettings

SETTINGS = web.AppKey("settings", ConsoleSettings)
DB = web.AppKey("db", Database)
RASA = web.AppKey("rasa", RasaClient)
JINJA = web.AppKey("jinja", jinja2.Environment)
