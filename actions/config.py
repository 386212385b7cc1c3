"""The action server's configuration, read from the environment and checked as a whole.

    python -m actions.config      # checks, prints the settings, exits 1 naming a bad key
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Mapping

from actions.records.db import DatabaseConfigError, async_url, database_url
from actions.records.plates import PROVINCES
from actions.records.queries import ProofPolicy


class ConfigError(ValueError):
    """A configuration value is missing or wrong; the message names the key."""


def _int(env: Mapping[str, str], key: str, default: int, low: int, high: int) -> int:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{key} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{key} must be between {low} and {high}, got {value}")
    return value


@dataclass(frozen=True)
class ActionSettings:
    database_url: str
    jurisdiction: tuple[str, ...]   # issuing offices served here, e.g. ("鲁B",)
    city: str
    proof_length: int
    proof: ProofPolicy
    max_listed: int

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "ActionSettings":
        env = os.environ if env is None else env
        url = database_url(dict(env))
        try:
            async_url(url)
        except DatabaseConfigError as exc:
            raise ConfigError(str(exc)) from None
        offices = tuple(p.strip() for p in env.get("JJ_JURISDICTION", "鲁B").split(",") if p.strip())
        if not offices:
            raise ConfigError("JJ_JURISDICTION must list at least one issuing office, e.g. 鲁B")
        for office in offices:
            if len(office) != 2 or office[0] not in PROVINCES or not ("A" <= office[1] <= "Z"):
                raise ConfigError(f"JJ_JURISDICTION: {office!r} is not an issuing office like 鲁B")
        return cls(
            database_url=url,
            jurisdiction=offices,
            city=env.get("JJ_CITY", "青岛"),
            proof_length=_int(env, "JJ_PROOF_LENGTH", 6, 4, 17),
            proof=ProofPolicy(
                max_failures_per_person=_int(env, "JJ_PROOF_MAX_FAILURES", 5, 1, 100),
                max_failures_per_subject=_int(env, "JJ_PROOF_MAX_FAILURES_PER_PLATE", 10, 1, 1000),
                window=timedelta(minutes=_int(env, "JJ_PROOF_LOCK_MINUTES", 60, 1, 7 * 24 * 60)),
            ),
            max_listed=_int(env, "JJ_MAX_LISTED_VIOLATIONS", 10, 1, 50),
        )


def main() -> int:
    try:
        settings = ActionSettings.from_env()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 1
    print(f"action settings ok: jurisdiction={','.join(settings.jurisdiction)} "
          f"proof_length={settings.proof_length} lock={settings.proof.window}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
