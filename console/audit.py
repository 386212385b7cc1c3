"""Every staff action into the audit log: channel "console", sender the staff username."""
from __future__ import annotations

from typing import Any, Optional

from actions.records import queries

from .auth import Staff


async def record(session, staff: Staff, action: str, subject: str, person_id: Optional[int] = None,
                 **detail: Any) -> None:
    await queries.audit(session, person_id=person_id, channel="console", sender_id=staff.username,
                        action=action[:32], subject=str(subject)[:32], detail={"role": staff.role, **detail})
