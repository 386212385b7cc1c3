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


def _local_channels():
    from scripts.settings import ChannelSettings

    return ChannelSettings.generate(*(f"http://127.0.0.1:{p}" for p in (8081, 8082, 8083, 8084)),
                                    "http://127.0.0.1:5005")


def test_every_channel_setting_survives_the_environment():
    from scripts.settings import ChannelSettings

    channels = _local_channels()
    assert ChannelSettings.from_env(channels.env()) == channels


@pytest.mark.parametrize("part, key, value, named", [
    ("sms", "gateway", "pigeon", "'gateway'"),
    ("weibo", "access_token", "", "'access_token'"),
    ("telegram", "secret_token", "has spaces in it", "'secret_token'"),
    ("wechat", "mode", "loud", "'mode'"),
])
def test_start_up_refuses_a_bad_channel_setting_naming_the_key(part, key, value, named, monkeypatch, tmp_path):
    from scripts.stack import check_config

    monkeypatch.setenv("JJ_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    channels = _local_channels()
    setattr(getattr(channels, part), key, value)
    with pytest.raises(SystemExit) as info:
        check_config(channels)
    assert named in str(info.value) and "configuration error" in str(info.value)
