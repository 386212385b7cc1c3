"""Rasa's own command line (`rasa run ...`), with three fixes and two tunings applied first.

Rasa 3.6 validates every action-server response with `jsonschema.validate`, which checks the
schema itself and builds a new validator on each call: half of the server's CPU under load. The
fix validates against the same schema with a validator built and checked once. Behaviour is
unchanged: a bad response still raises the same ValidationError with the same message.

Rasa 3.6 swallows a failed custom action ("Bot will continue, but the actions events are lost"):
with the action server down the user hears nothing and the turn is saved half done. The second fix
lets that failure end the turn with `ActionServerUnavailable` before anything is saved, so the
channel can apologise and answer the message again once the action server is back.

Rasa 3.6 wraps the tracker store in a fail-safe one: when PostgreSQL cannot be read it starts the
conversation afresh, and when it cannot be written it keeps the turn in this process's memory. With
several servers that forks the conversation. The third fix fails the turn instead
(`TrackerStoreUnavailable`), before anything is answered, so the channel holds the message.

Last, once the model is loaded its objects are moved out of the garbage collector's sight
(`gc.freeze`): they live as long as the server, and every full collection walked all of them,
stopping the event loop for 0.5-0.8 s every 20-30 s under load, for every conversation at once.

And every message reads its conversation back from the tracker store, event by event, and Rasa
finds each event's class by walking all of Event's subclasses again: 14 ms of the 16 ms it takes to
read 500 events. The class found for each type name is now remembered.
"""
from __future__ import annotations

import sys
from typing import Any, Dict, Text


def compile_action_response_validation() -> None:
    from jsonschema import ValidationError, validators
    from rasa.core.actions.action import RemoteAction
    from rasa.shared.constants import DOCS_BASE_URL

    schema = RemoteAction.action_response_format_spec()
    cls = validators.validator_for(schema)
    cls.check_schema(schema)
    validator = cls(schema)

    def _validate_action_result(self: RemoteAction, result: Dict[Text, Any]) -> bool:
        try:
            validator.validate(result)
            return True
        except ValidationError as e:
            e.message += (
                ". Failed to validate Action server response from API, make sure your response "
                f"from the Action endpoint is valid. For more information about the format visit "
                f"{DOCS_BASE_URL}/custom-actions")
            raise e

    RemoteAction._validate_action_result = _validate_action_result


class ActionServerUnavailable(Exception):
    """A custom action could not be run: the action server is down or failing."""


def fail_turn_when_action_server_is_down() -> None:
    from rasa.core.actions.action import ActionExecutionRejection, RemoteAction
    from rasa.core.processor import MessageProcessor
    from rasa.shared.exceptions import RasaException

    run_action = MessageProcessor._run_action

    async def _run_action(self: MessageProcessor, action: Any, *args: Any, **kwargs: Any) -> bool:
        if not isinstance(action, RemoteAction):
            return await run_action(self, action, *args, **kwargs)
        failures = []
        remote_run = action.run

        async def guarded_run(*a: Any, **k: Any) -> Any:
            try:
                return await remote_run(*a, **k)
            except ActionExecutionRejection:
                raise
            except RasaException as exc:  # connection refused, 5xx: what Rasa would swallow
                failures.append(exc)
                raise

        action.run = guarded_run  # this instance only; Rasa makes one per prediction
        result = await run_action(self, action, *args, **kwargs)
        if failures:
            raise ActionServerUnavailable(action.name()) from failures[0]
        return result

    MessageProcessor._run_action = _run_action


class TrackerStoreUnavailable(Exception):
    """The conversation store cannot be read or written (PostgreSQL down or restarting)."""


def fail_turn_when_tracker_store_is_down() -> None:
    from rasa.core.tracker_store import FailSafeTrackerStore

    async def retrieve(self: FailSafeTrackerStore, sender_id: Text) -> Any:
        try:
            return await self._tracker_store.retrieve(sender_id)
        except Exception as exc:
            raise TrackerStoreUnavailable(f"reading the conversation of {sender_id}") from exc

    async def retrieve_full_tracker(self: FailSafeTrackerStore, sender_id: Text) -> Any:
        try:
            return await self._tracker_store.retrieve_full_tracker(sender_id)
        except Exception as exc:
            raise TrackerStoreUnavailable(f"reading the conversation of {sender_id}") from exc

    async def save(self: FailSafeTrackerStore, tracker: Any) -> None:
        try:
            await self._tracker_store.save(tracker)
        except Exception as exc:
            raise TrackerStoreUnavailable(f"saving the conversation of {tracker.sender_id}") from exc

    FailSafeTrackerStore.retrieve = retrieve
    FailSafeTrackerStore.retrieve_full_tracker = retrieve_full_tracker
    FailSafeTrackerStore.save = save


def freeze_what_is_alive() -> None:
    """Collect once, then keep what survives (loaded for the server's lifetime) out of later collections."""
    import gc

    gc.collect()
    gc.freeze()


def freeze_model_objects() -> None:
    import rasa.core.run as run

    load = run.load_agent_on_start

    async def load_agent_on_start(*args: Any, **kwargs: Any) -> Any:
        agent = await load(*args, **kwargs)
        freeze_what_is_alive()  # the model, the domain, the graph: never collected anyway
        return agent

    run.load_agent_on_start = load_agent_on_start


def remember_event_classes() -> None:
    from rasa.shared.core.events import Event

    resolve = Event.resolve_by_type
    found: Dict[Text, Any] = {}

    def resolve_by_type(type_name: Text, default: Any = None) -> Any:
        cls = found.get(type_name)
        if cls is None:
            cls = resolve(type_name, default)
            if cls is not None and cls.type_name == type_name:  # not a default or a None stand-in
                found[type_name] = cls
        return cls

    Event.resolve_by_type = staticmethod(resolve_by_type)


def main() -> None:
    freeze_model_objects()
    remember_event_classes()
    compile_action_response_validation()
    fail_turn_when_action_server_is_down()
    fail_turn_when_tracker_store_is_down()
    from rasa.__main__ import main as rasa_main

    sys.argv[0] = "rasa"
    rasa_main()


if __name__ == "__main__":
    main()
