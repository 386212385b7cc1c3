"""Custom Rasa pipeline components."""
from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Text

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.nlu.constants import ENTITIES, INTENT, INTENT_RANKING_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from nlu.normalise import is_traditional, move_span, normalise_with_offsets

ORIGINAL_TEXT = "original_text"
SCRIPT = "script"


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER], is_trainable=False)
class ChineseNormaliser(GraphComponent):
    """Rewrites each message's text into normalised simplified Chinese before tokenising.

    Put it first in the pipeline. Entity spans of training examples move with the text; the
    original text and its script (simplified or traditional) stay on the message.
    """

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {}

    @classmethod
    def create(cls, config: Dict[Text, Any], model_storage: ModelStorage, resource: Resource,
               execution_context: ExecutionContext) -> "ChineseNormaliser":
        return cls()

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        for message in training_data.training_examples:
            self._normalise(message)
        return training_data

    def process(self, messages: List[Message]) -> List[Message]:
        for message in messages:
            self._normalise(message)
        return messages

    @staticmethod
    def _normalise(message: Message) -> None:
        text: Optional[str] = message.get(TEXT)
        if not text:
            return
        normalised, sources = normalise_with_offsets(text)
        message.set(SCRIPT, "traditional" if is_traditional(text) else "simplified",
                    add_to_output=True)
        if normalised == text:
            return
        message.set(ORIGINAL_TEXT, text, add_to_output=True)
        message.set(TEXT, normalised)
        entities = message.get(ENTITIES) or []
        moved = []
        for entity in entities:
            span = move_span(sources, entity["start"], entity["end"])
            if span is None:
                continue
            start, end = span
            value = entity.get("value")
            if value == text[entity["start"]:entity["end"]]:
                value = normalised[start:end]  # an unmapped value follows the text
            moved.append({**entity, "start": start, "end": end, "value": value})
        if entities:
            message.set(ENTITIES, moved)


# Entities whose shape a regex knows exactly; DIET's guesses for them are dropped.
EXACT_SHAPES = {"plate", "vin_suffix", "licence_no", "file_no", "report_no", "appointment_no", "phone", "email"}


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.ENTITY_EXTRACTOR], is_trainable=False)
class ExactShapeEntities(GraphComponent):
    """Keeps only the regex extractor's entities for exactly shaped types, and drops regex
    matches that sit inside a longer exact match (a VIN suffix inside a phone number, say)."""

    @classmethod
    def create(cls, config: Dict[Text, Any], model_storage: ModelStorage, resource: Resource,
               execution_context: ExecutionContext) -> "ExactShapeEntities":
        return cls()

    def process(self, messages: List[Message]) -> List[Message]:
        for message in messages:
            entities = message.get(ENTITIES) or []
            regex = [e for e in entities if e.get("extractor") == "RegexEntityExtractor"]
            kept = [e for e in entities if e.get("entity") not in EXACT_SHAPES]
            for e in regex:
                inside_longer = any(o is not e and o["start"] <= e["start"] and e["end"] <= o["end"]
                                    and (o["end"] - o["start"]) > (e["end"] - e["start"]) for o in regex)
                if not inside_longer:
                    kept.append(e)
            message.set(ENTITIES, kept, add_to_output=True)
        return messages


_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_CODE = [
    re.compile(r"\b(select|insert|update|delete|drop|truncate|union|alter)\b.*(\b(from|table|into|set|where|select)\b|--|;)",
               re.I | re.S),
    re.compile(r"<\s*/?\s*[a-z][a-z0-9]*(\s[^>]*)?>", re.I),   # markup
    re.compile(r"\$\{|\{\{.*\}\}", re.S),                     # template and JNDI lookups
    re.compile(r"\.\./\.\./|\brm\s+-rf\b|\|\s*(sh|bash)\b"),   # paths and shell
    re.compile(r"'\s*(or|and)\s*'?\d*'?\s*=|\bor\s+1\s*=\s*1\b|'\s*--", re.I),
]


def looks_like_code(text: str) -> bool:
    """SQL, markup, template or shell text with no Chinese in it: never a request to us."""
    return bool(text) and not _CJK.search(text) and any(p.search(text) for p in _CODE)


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER], is_trainable=False)
class CodeIsOutOfScope(GraphComponent):
    """Puts out_of_scope first for a message that is only code (an injection probe, say). The model
    learns from words; text like this has few it knows, so its guess is a chance one. Chinese with
    code inside it ("他的微信是'; DROP…") is left to the model."""

    @classmethod
    def create(cls, config: Dict[Text, Any], model_storage: ModelStorage, resource: Resource,
               execution_context: ExecutionContext) -> "CodeIsOutOfScope":
        return cls()

    def process(self, messages: List[Message]) -> List[Message]:
        for message in messages:
            if looks_like_code(message.get(TEXT) or ""):
                ranking = [r for r in message.get(INTENT_RANKING_KEY) or [] if r.get("name") != "out_of_scope"]
                top = {"name": "out_of_scope", "confidence": 1.0}
                message.set(INTENT, top, add_to_output=True)
                message.set(INTENT_RANKING_KEY, [top] + [{**r, "confidence": 0.0} for r in ranking],
                            add_to_output=True)
        return messages
