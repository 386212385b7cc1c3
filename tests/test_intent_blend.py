"""CharNgramIntentBlend: trained on real messages, persisted in Rasa's model storage, loaded back."""
from __future__ import annotations

import zipfile

import pytest
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.nlu.constants import INTENT, INTENT_RANKING_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from nlu.intent_blend import CharNgramIntentBlend

EXAMPLES = {
    "query_violations": ["查违章", "帮我查一下违章", "我的车有没有违章", "查下违章记录", "违章查询"],
    "query_points": ["我还有几分", "查驾照分数", "驾驶证扣了几分", "查一下我的分", "还剩多少分"],
    "greet": ["你好", "您好", "在吗", "哈喽", "你好啊"],
}


@pytest.fixture()
def storage(tmp_path):
    (tmp_path / "storage").mkdir()
    return LocalModelStorage(tmp_path / "storage")


def context() -> ExecutionContext:
    return ExecutionContext(GraphSchema({}), "test-model")


def trained(storage, **config) -> CharNgramIntentBlend:
    data = TrainingData([Message(data={TEXT: t, INTENT: intent}) for intent, texts in EXAMPLES.items() for t in texts])
    blend = CharNgramIntentBlend.create({**CharNgramIntentBlend.get_default_config(), **config}, storage,
                                        Resource("blend"), context())
    blend.train(data)
    return blend


def parsed(blend: CharNgramIntentBlend, text: str, diet: list[tuple[str, float]]) -> Message:
    message = Message(data={TEXT: text})
    message.set(INTENT, {"name": diet[0][0], "confidence": diet[0][1]})
    message.set(INTENT_RANKING_KEY, [{"name": n, "confidence": c} for n, c in diet])
    blend.process([message])
    return message


def test_an_unsure_diet_guess_is_outvoted_by_the_character_model(storage):
    blend = trained(storage)
    message = parsed(blend, "帮我查查违章", [("greet", 0.45), ("query_violations", 0.40), ("query_points", 0.15)])
    assert message.get(INTENT)["name"] == "query_violations"
    ranking = message.get(INTENT_RANKING_KEY)
    confidences = [r["confidence"] for r in ranking]
    assert confidences == sorted(confidences, reverse=True)
    assert sum(confidences) == pytest.approx(1.0)
    assert ranking[0] == message.get(INTENT)


def test_a_sure_diet_guess_keeps_its_share(storage):
    blend = trained(storage, diet_weight=1.0)
    message = parsed(blend, "帮我查查违章", [("greet", 0.9), ("query_violations", 0.1)])
    assert message.get(INTENT) == {"name": "greet", "confidence": pytest.approx(0.9)}


def test_an_intent_only_diet_knows_is_kept(storage):
    blend = trained(storage)
    message = parsed(blend, "你好", [("thank", 0.7), ("greet", 0.3)])
    names = [r["name"] for r in message.get(INTENT_RANKING_KEY)]
    assert "thank" in names and "greet" in names


def test_persisted_and_loaded_it_ranks_the_same(storage):
    blend = trained(storage)
    diet = [("greet", 0.5), ("query_points", 0.5)]
    before = parsed(blend, "我的驾照还有几分", diet).get(INTENT_RANKING_KEY)
    loaded = CharNgramIntentBlend.load(CharNgramIntentBlend.get_default_config(), storage, Resource("blend"), context())
    after = parsed(loaded, "我的驾照还有几分", diet).get(INTENT_RANKING_KEY)
    assert [r["name"] for r in after] == [r["name"] for r in before] and before[0]["name"] == "query_points"
    assert [r["confidence"] for r in after] == pytest.approx([r["confidence"] for r in before])


ALERTS = {
    "subscribe_alerts": ["提醒我", "开通违章提醒", "有违章提醒我", "订阅提醒", "年检到期提醒我", "发短信提醒我"],
    "unsubscribe_alerts": ["不要提醒了", "别提醒我", "不想收提醒", "退订", "违章提醒停掉", "取消订阅"],
}


def alerts_model(storage, mark_negation: bool) -> CharNgramIntentBlend:
    data = TrainingData([Message(data={TEXT: t, INTENT: intent}) for intent, texts in ALERTS.items() for t in texts])
    blend = CharNgramIntentBlend.create({**CharNgramIntentBlend.get_default_config(), "mark_negation": mark_negation},
                                        storage, Resource(f"alerts-{mark_negation}"), context())
    blend.train(data)
    return blend


@pytest.mark.parametrize("text", ["不再提醒", "有违章不用提醒我", "年检提醒关掉", "甭发短信提醒我了"])
def test_negation_words_it_never_saw_with_alerts_turn_them_off(storage, text):
    # Each message says "提醒" with a negation word the six "off" examples do not use.
    plain, marked = alerts_model(storage, False), alerts_model(storage, True)
    diet = [("subscribe_alerts", 0.5), ("unsubscribe_alerts", 0.5)]
    assert parsed(marked, text, diet).get(INTENT)["name"] == "unsubscribe_alerts"
    margin = {m: {r["name"]: r["confidence"] for r in parsed(m, text, diet).get(INTENT_RANKING_KEY)} for m in (plain, marked)}
    assert margin[marked]["unsubscribe_alerts"] > margin[plain]["unsubscribe_alerts"]


def test_with_negation_marks_it_is_persisted_and_loaded(storage):
    blend = alerts_model(storage, True)
    diet = [("subscribe_alerts", 0.5), ("unsubscribe_alerts", 0.5)]
    before = parsed(blend, "别再发提醒", diet).get(INTENT_RANKING_KEY)
    config = {**CharNgramIntentBlend.get_default_config(), "mark_negation": True}
    loaded = CharNgramIntentBlend.load(config, storage, Resource("alerts-True"), context())
    after = parsed(loaded, "别再发提醒", diet).get(INTENT_RANKING_KEY)
    assert before[0]["name"] == "unsubscribe_alerts"
    assert [r["confidence"] for r in after] == pytest.approx([r["confidence"] for r in before])


def test_untrained_it_leaves_diet_alone(storage):
    blend = CharNgramIntentBlend.create(CharNgramIntentBlend.get_default_config(), storage, Resource("none"), context())
    blend.train(TrainingData([Message(data={TEXT: "你好", INTENT: "greet"})]))  # one intent: nothing to learn
    loaded = CharNgramIntentBlend.load(CharNgramIntentBlend.get_default_config(), storage, Resource("none"), context())
    message = parsed(loaded, "你好", [("greet", 0.8), ("thank", 0.2)])
    assert message.get(INTENT) == {"name": "greet", "confidence": 0.8}


@pytest.mark.parametrize("key, value", [("diet_weight", 1.5), ("temperature", 0), ("C", -1), ("max_ngram", "3"),
                                        ("ranking_length", -2), ("diet_weight", True), ("mark_negation", "yes")])
def test_a_bad_setting_is_named(storage, key, value):
    with pytest.raises(ValueError, match=key):
        CharNgramIntentBlend.create({key: value}, storage, Resource("bad"), context())


def test_a_damaged_model_file_fails_the_load(storage, tmp_path):
    trained(storage)
    (tmp_path / "storage" / "blend" / "char_ngram_svm.skops").write_bytes(b"not a model")
    with pytest.raises(zipfile.BadZipFile):
        CharNgramIntentBlend.load(CharNgramIntentBlend.get_default_config(), storage, Resource("blend"), context())


def test_negation_and_again_words_become_one_mark_each():
    from nlu.negation import marked
    assert marked("别提醒") == marked("不要提醒") == marked("停止提醒") == "¬提醒"
    assert marked("提醒重新打开") == "提醒↺↺"
    assert marked("Stop alerts") == "¬ alerts" and marked("提醒我") == "提醒我"
