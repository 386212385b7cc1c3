"""Talk to the running assistant from a terminal, as a WeChat user: each line you type is sent
as WeChat sends it (signed, encrypted XML) to the webhook `make run` started.

    python scripts/chat.py [--openid ID] [--webhook URL]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.wechat_user import WeChatPlatform, WeChatUser  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description="Chat with the assistant over the WeChat webhook.")
    parser.add_argument("--webhook", default="http://127.0.0.1:5005/webhooks/wechat/webhook")
    parser.add_argument("--openid", default="o_terminal_user_0001")
    args = parser.parse_args()
    env_file = ROOT / "var" / "dev.env"
    if not env_file.exists():
        print("No var/dev.env: start the assistant first with `make run`.", file=sys.stderr)
        return 1
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
    if "WECHAT_TOKEN" not in values:
        print("var/dev.env is from an older version: delete it and start the assistant again.", file=sys.stderr)
        return 1
    platform = WeChatPlatform(args.webhook, values["WECHAT_TOKEN"], values["WECHAT_APP_ID"], values["WECHAT_AES_KEY"],
                              values.get("WECHAT_MODE", "safe"))
    user = WeChatUser(platform, args.openid)
    api = values.get("WECHAT_API_BASE", "")
    print(f"你是微信用户 {args.openid}。输入消息后回车，Ctrl-D 退出。")
    while True:
        try:
            line = input("你> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if not line:
            continue
        sent_at = time.time()
        try:
            reply = user.say(line)
        except requests.RequestException as exc:
            print(f"(webhook unreachable: {exc})")
            continue
        if reply.status != 200:
            print(f"(webhook answered HTTP {reply.status}: {reply.body[:200]})")
        elif reply.text is not None:
            print(f"助手> {reply.text}")
        elif api.startswith("http://127.0.0.1"):
            # A slow answer comes later, through the customer-service API (the local stand-in).
            for _ in range(40):
                time.sleep(0.5)
                items = requests.get(f"{api}/_standin/inbox", params={"touser": args.openid,
                                                                      "after": sent_at}, timeout=5).json()
                if items:
                    for item in items:
                        print(f"助手（客服消息）> {item['text']}")
                    break
            else:
                print("(no answer)")


if __name__ == "__main__":
    sys.exit(main())
