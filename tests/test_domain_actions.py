"""The domain and the action server agree on the custom actions, without starting anything."""
import yaml
from rasa_sdk.executor import ActionExecutor

from scripts.train import ROOT


def test_every_custom_action_in_the_domain_is_served_and_nothing_else():
    domain = yaml.safe_load((ROOT / "domain.yml").read_text(encoding="utf-8"))
    executor = ActionExecutor()
    executor.register_package("actions")
    assert set(executor.actions) == set(domain["actions"])


def test_every_form_slot_is_a_domain_slot_and_every_ask_exists():
    domain = yaml.safe_load((ROOT / "domain.yml").read_text(encoding="utf-8"))
    for form, spec in domain["forms"].items():
        for slot in spec["required_slots"]:
            assert slot in domain["slots"], (form, slot)
            asks = {f"utter_ask_{form}_{slot}", f"utter_ask_{slot}", f"action_ask_{slot}"}
            assert asks & (set(domain["responses"]) | set(domain["actions"])), (form, slot)
