"""Which free-text answers say something: a description or a place that is only filler is asked again."""
import pytest

from actions.common import vague


@pytest.mark.parametrize("text", ["就那个嘛", "你懂的", "不知道", "就在这儿", "那里", "嗯嗯", "😀", "", "不清楚啊"])
def test_filler_says_nothing(text):
    assert vague(text)


@pytest.mark.parametrize("text", ["红灯不亮", "坏了", "有人卖分", "东门", "路口", "就在香港中路", "标志牌歪了",
                                  "那个黄牛姓王", "這個紅燈一直閃"])
def test_a_few_words_of_content_are_enough(text):
    assert not vague(text)
