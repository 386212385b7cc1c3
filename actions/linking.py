"""One person across channels: a code shown on one channel and typed on another links them.

Whoever types the code on channel B has read it on channel A, so one person holds both: B's
bindings, subscriptions and reports join A's person, and each channel then sees all of them.
"""
from __future__ import annotations

import re
import unicodedata
from typing import List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions import replies
from actions.common import channel_of, latest_text, person_of
from actions.records import queries
from actions.runtime import database, settings

CODE = re.compile(r"(?<![0-9A-Za-z])(\d{6})(?![0-9A-Za-z])")
LINK_SUBJECT = "link-code"


def code_in(text: str) -> Optional[str]:
    match = CODE.search(unicodedata.normalize("NFKC", text or ""))
    return match.group(1) if match else None


class ActionLinkAccount(Action):
    def name(self) -> Text:
        return "action_link_account"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[EventType]:
        channel, sender = channel_of(tracker), tracker.sender_id
        code = code_in(latest_text(tracker))
        cfg = settings()
        async with database().session() as session, session.begin():
            person = await person_of(session, tracker)
            if code is None:
                issued = await queries.issue_link_code(session, person.id, channel, sender)
                dispatcher.utter_message(text=replies.link_code_issued(issued))
                return []
            until = await queries.proof_locked_until(session, person.id, LINK_SUBJECT, cfg.proof)
            if until:
                dispatcher.utter_message(text=replies.locked_out(until))
                return []
            outcome = await queries.redeem_link_code(session, person.id, channel, sender, code)
            await queries.record_proof_attempt(session, person.id, "link", LINK_SUBJECT,
                                               outcome.status != "invalid")
            if outcome.status == "linked":
                await queries.audit(session, person_id=outcome.person_id, channel=channel, sender_id=sender,
                                    action="link_channels", subject=outcome.other_channel or "",
                                    detail={"merged_person": person.id})
                vehicles = await queries.bound_vehicles(session, outcome.person_id)
                licences = await queries.bound_licences(session, outcome.person_id)
                text = replies.channels_linked(outcome.other_channel, [v.plate for v in vehicles], len(licences))
            elif outcome.status == "invalid":
                left = await queries.failures_left(session, person.id, cfg.proof)
                text = replies.link_code_invalid(left)
            else:
                text = replies.link_code_refused(outcome.status)
        dispatcher.utter_message(text=text)
        return []
