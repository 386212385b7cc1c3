import pytest

from actions.config import ActionSettings, ConfigError
from channels.wechat import WeChatConfig, WeChatConfigError

GOOD = {"token": "abc123", "app_id": "wx1", "app_secret": "s", "mode": "safe",
        "encoding_aes_key": "A" * 43}


def test_defaults():
    settings = ActionSettings.from_env({})
    assert settings.jurisdiction == ("鲁B",)
    assert settings.proof_length == 6
    config = WeChatConfig.from_credentials(GOOD)
    assert config.reply_budget == 4.0 and config.mode == "safe"


@pytest.mark.parametrize("env, key", [
    ({"JJ_PROOF_LENGTH": "six"}, "JJ_PROOF_LENGTH"),
    ({"JJ_PROOF_MAX_FAILURES": "0"}, "JJ_PROOF_MAX_FAILURES"),
    ({"JJ_JURISDICTION": "QB"}, "JJ_JURISDICTION"),
    ({"JJ_DATABASE_URL": "mysql://x/y"}, "JJ_DATABASE_URL"),
    ({"JJ_DATABASE_URL": "not a url"}, "JJ_DATABASE_URL"),
])
def test_bad_action_settings_name_the_key(env, key):
    with pytest.raises(ConfigError, match=key):
        ActionSettings.from_env(env)


@pytest.mark.parametrize("change, key", [
    ({"token": ""}, "token"),
    ({"token": "has space"}, "token"),
    ({"mode": "secret"}, "mode"),
    ({"encoding_aes_key": "short"}, "encoding_aes_key"),
    ({"reply_budget": "5.5"}, "reply_budget"),
    ({"reply_budget": "soon"}, "reply_budget"),
    ({"api_base_url": "ftp://x"}, "api_base_url"),
    ({"dedup": "memcached://x"}, "dedup"),
    ({"app_secret": None}, "app_secret"),
])
def test_bad_wechat_credentials_name_the_key(change, key):
    with pytest.raises(WeChatConfigError, match=f"'{key}'"):
        WeChatConfig.from_credentials({**GOOD, **change})


def test_plain_mode_needs_no_aes_key():
    config = WeChatConfig.from_credentials({**GOOD, "mode": "plain", "encoding_aes_key": ""})
    assert config.encoding_aes_key is None
