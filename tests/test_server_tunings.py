"""The tunings scripts/rasa_server.py and scripts/action_server.py apply before starting the servers."""
from __future__ import annotations

import gc

import pytest
from rasa.shared.core.events import Event, SlotSet, UserUttered, deserialise_events
from rasa.shared.utils.common import all_subclasses

from scripts.action_server import freeze_after_registration
from scripts.rasa_server import remember_event_classes


@pytest.fixture
def remembered(monkeypatch):
    # Put Rasa's own lookup back afterwards: the patch is process-wide.
    monkeypatch.setattr(Event, "resolve_by_type", Event.__dict__["resolve_by_type"])
    original = Event.resolve_by_type
    remember_event_classes()
    return original


def test_remembered_event_classes_are_rasas_own(remembered):
    names = {cls.type_name for cls in all_subclasses(Event)}
    assert len(names) > 20
    for _ in range(2):  # the first lookup fills the memory, the second reads it
        for name in names:
            assert Event.resolve_by_type(name) is remembered(name)


def test_unknown_event_names_answer_as_before(remembered):
    with pytest.raises(ValueError, match="Unknown event name 'no_such_event'"):
        Event.resolve_by_type("no_such_event")
    assert Event.resolve_by_type("no_such_event", SlotSet) is SlotSet
    assert Event.resolve_by_type("topic") is None
    # A default handed back once is not remembered for that name.
    with pytest.raises(ValueError):
        Event.resolve_by_type("no_such_event")


def test_a_stored_conversation_reads_back_the_same(remembered):
    stored = [UserUttered("查一下鲁B12345的违章", {"name": "query_violations", "confidence": 0.9}).as_dict(),
              SlotSet("plate", "鲁B12345").as_dict()] * 3
    before = [e.as_dict() for e in deserialise_events(stored)]
    assert [type(e) for e in deserialise_events(stored)] == [UserUttered, SlotSet] * 3
    assert [e.as_dict() for e in deserialise_events(stored)] == before == stored


def test_action_server_freezes_what_registration_loaded(monkeypatch):
    from rasa_sdk.executor import ActionExecutor

    monkeypatch.setattr(ActionExecutor, "register_package", ActionExecutor.register_package)
    gc.unfreeze()
    freeze_after_registration()
    executor = ActionExecutor()
    try:
        executor.register_package("actions")
        assert "action_show_violations" in executor.actions
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
