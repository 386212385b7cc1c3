"""A linear classifier on character n-grams, blended with DIET's intent ranking.

Short Chinese messages are told apart mostly by which characters and character pairs they
contain; a linear model on those is strong where DIET, trained for few epochs, is unsure, and
wrong in other places than DIET. Averaging the two rankings was chosen on data/dev (DIET alone
0.961 macro-F1, the blend 0.976); data/test was not used to choose.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Any, Dict, List, Optional, Text

import numpy as np
from scipy.special import softmax

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.nlu.constants import INTENT, INTENT_RANKING_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

logger = logging.getLogger(__name__)

MODEL_FILE = "char_ngram_svm.skops"
# The fitted TF-IDF keeps its idf as a sparse matrix; nothing else outside sklearn's own types but ours.
TRUSTED_TYPES = ["scipy.sparse._csr.csr_matrix", "nlu.negation.NegationMarkedNgrams"]


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER], is_trainable=True)
class CharNgramIntentBlend(GraphComponent):
    """Put it after DIETClassifier: it replaces the intent and ranking with a weighted average of
    DIET's confidences and a softmax over a linear SVM's scores on character 1..max_ngram-grams."""

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {
            "diet_weight": 0.4,     # share of DIET's confidence in the blend
            "temperature": 0.2,     # softmax temperature over the SVM's margins
            "C": 1.0,               # the SVM's regularisation
            "max_ngram": 3,
            "ranking_length": 10,
            "mark_negation": False,  # add n-grams of the text with negation words marked (nlu/negation.py)
        }

    @classmethod
    def validate_config(cls, config: Dict[Text, Any]) -> None:
        checks = {
            "diet_weight": lambda v: 0.0 <= v <= 1.0,
            "temperature": lambda v: v > 0,
            "C": lambda v: v > 0,
            "max_ngram": lambda v: isinstance(v, int) and v >= 1,
            "ranking_length": lambda v: isinstance(v, int) and v >= 0,
        }
        for key, ok in checks.items():
            value = config.get(key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not ok(value):
                raise ValueError(f"CharNgramIntentBlend: bad value for '{key}': {value!r}")
        if not isinstance(config.get("mark_negation"), bool):
            raise ValueError(f"CharNgramIntentBlend: bad value for 'mark_negation': {config.get('mark_negation')!r}")

    def __init__(self, config: Dict[Text, Any], model_storage: ModelStorage, resource: Resource,
                 pipeline: Optional[Any] = None) -> None:
        self.config = {**self.get_default_config(), **config}
        self.validate_config(self.config)
        self._model_storage = model_storage
        self._resource = resource
        self.pipeline = pipeline

    @classmethod
    def create(cls, config: Dict[Text, Any], model_storage: ModelStorage, resource: Resource,
               execution_context: ExecutionContext) -> "CharNgramIntentBlend":
        return cls(config, model_storage, resource)

    def train(self, training_data: TrainingData) -> Resource:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import make_pipeline, make_union
        from sklearn.svm import LinearSVC

        from nlu.negation import NegationMarkedNgrams

        examples = [m for m in training_data.intent_examples if m.get(TEXT) and m.get(INTENT)]
        if len({m.get(INTENT) for m in examples}) < 2:
            logger.debug("CharNgramIntentBlend: fewer than two intents, nothing trained")
            return self._resource
        # char_wb pads the message with spaces, so its first and last characters are features too.
        ngrams = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, self.config["max_ngram"]), sublinear_tf=True)
        self.pipeline = make_pipeline(
            make_union(ngrams, NegationMarkedNgrams(self.config["max_ngram"])) if self.config["mark_negation"] else ngrams,
            LinearSVC(C=self.config["C"], random_state=0),  # liblinear shuffles: fixed, so retraining gives the same model
        ).fit([m.get(TEXT) for m in examples], np.array([m.get(INTENT) for m in examples]))
        self.persist()
        return self._resource

    def persist(self) -> None:
        import skops.io as sio

        with self._model_storage.write_to(self._resource) as model_dir:
            sio.dump(self.pipeline, model_dir / MODEL_FILE)

    @classmethod
    def load(cls, config: Dict[Text, Any], model_storage: ModelStorage, resource: Resource,
             execution_context: ExecutionContext, **kwargs: Any) -> "CharNgramIntentBlend":
        import skops.io as sio

        with contextlib.ExitStack() as stack:
            try:
                model_dir = stack.enter_context(model_storage.read_from(resource))
            except ValueError:  # nothing persisted: trained without intents
                return cls(config, model_storage, resource)
            # Anything wrong with a file that was persisted fails the load loudly.
            path = model_dir / MODEL_FILE
            unexpected = set(sio.get_untrusted_types(file=path)) - set(TRUSTED_TYPES)
            if unexpected:
                raise ValueError(f"CharNgramIntentBlend: unexpected types in {MODEL_FILE}: {sorted(unexpected)}")
            return cls(config, model_storage, resource, sio.load(path, trusted=TRUSTED_TYPES))

    def svm_probabilities(self, texts: List[str]) -> tuple[list[str], np.ndarray]:
        margins = np.atleast_2d(self.pipeline.decision_function(texts))
        if margins.shape[1] == 1:  # two classes: sklearn gives one margin
            margins = np.hstack([-margins, margins])
        return list(self.pipeline.classes_), softmax(margins / self.config["temperature"], axis=1)

    def process(self, messages: List[Message]) -> List[Message]:
        if self.pipeline is None or not messages:
            return messages
        labels, probabilities = self.svm_probabilities([m.get(TEXT) or "" for m in messages])
        share = self.config["diet_weight"]
        for message, row in zip(messages, probabilities):
            diet = {r["name"]: r["confidence"] for r in message.get(INTENT_RANKING_KEY) or []}
            blended = {label: share * diet.get(label, 0.0) + (1 - share) * float(p)
                       for label, p in zip(labels, row)}
            for label, confidence in diet.items():  # an intent the SVM never saw keeps DIET's share
                blended.setdefault(label, share * confidence)
            ranking = [{"name": name, "confidence": confidence}
                       for name, confidence in sorted(blended.items(), key=lambda kv: -kv[1])]
            if self.config["ranking_length"]:
                ranking = ranking[: self.config["ranking_length"]]
            message.set(INTENT, ranking[0], add_to_output=True)
            message.set(INTENT_RANKING_KEY, ranking, add_to_output=True)
        return messages
