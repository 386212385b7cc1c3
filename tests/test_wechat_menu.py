"""The custom-menu command against the stand-in WeChat API: the file in the repository becomes the
account's menu, and a file WeChat would refuse is refused before anything is sent."""
import json

import pytest

from scripts import wechat_menu
from scripts.stack import WeChatSettings


@pytest.fixture
def env(wechat_api, monkeypatch):
    settings = WeChatSettings.generate(app_id=wechat_api.app_id, app_secret=wechat_api.app_secret,
                                       api_base=wechat_api.url)
    for key, value in settings.env().items():
        monkeypatch.setenv(key, value)
    wechat_api.menu = None
    return wechat_api


def test_the_repository_menu_is_created_as_written(env, capsys):
    assert wechat_menu.main([]) == 0
    assert env.menu == json.loads(wechat_menu.MENU.read_text(encoding="utf-8"))
    assert "created" in capsys.readouterr().out


def test_every_click_key_is_an_intent_of_the_assistant(env):
    assert wechat_menu.main(["--check"]) == 0
    assert env.menu is None  # checking sends nothing


def test_a_bad_menu_is_refused_with_the_reason(env, tmp_path, capsys):
    menu = json.loads(wechat_menu.MENU.read_text(encoding="utf-8"))
    menu["button"][0]["sub_button"][0]["key"] = "drop_table"
    menu["button"].append({"name": "太长的一级菜单名字", "type": "click", "key": "help"})
    path = tmp_path / "menu.json"
    path.write_text(json.dumps(menu, ensure_ascii=False), encoding="utf-8")
    assert wechat_menu.main(["--file", str(path)]) == 2
    err = capsys.readouterr().err
    assert "'drop_table' is not an intent" in err and "1 to 3 top-level buttons" in err
    assert env.menu is None


def test_wechat_limits_are_enforced_by_the_stand_in_too(env):
    from channels.wechat import WeChatConfig, make_client
    from wechatpy.exceptions import WeChatClientException

    settings = WeChatSettings.generate(app_id=env.app_id, app_secret=env.app_secret, api_base=env.url)
    client = make_client(WeChatConfig.from_credentials(settings.credentials()))
    with pytest.raises(WeChatClientException) as info:
        client.menu.create({"button": [{"name": "x" * 20, "type": "click", "key": "help"}]})
    assert info.value.errcode == 40018
