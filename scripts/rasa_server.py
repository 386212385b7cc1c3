"""Rasa's own command line (`rasa run ...`), with one fix applied first.

Rasa 3.6 validates every action-server response with `jsonschema.validate`, which checks the
schema itself and builds a new validator on each call: half of the server's CPU under load. The
fix validates against the same schema with a validator built and checked once. Behaviour is
unchanged: a bad response still raises the same ValidationError with the same message.
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


def main() -> None:
    compile_action_response_validation()
    from rasa.__main__ import main as rasa_main

    sys.argv[0] = "rasa"
    rasa_main()


if __name__ == "__main__":
    main()
