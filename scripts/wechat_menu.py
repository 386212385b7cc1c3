"""Create the official account's custom menu from channels/menus/wechat_menu.json.

    python -m scripts.wechat_menu            # create it (credentials from the environment / var/dev.env)
    python -m scripts.wechat_menu --check    # only check the file
    python -m scripts.wechat_menu --file other.json

Every click key must be one of the assistant's intents: a click reaches Rasa as that intent.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
MENU = ROOT / "channels" / "menus" / "wechat_menu.json"


def menu_problems(menu: dict, intents: set[str]) -> list[str]:
    problems = []
    buttons = menu.get("button") if isinstance(menu, dict) else None
    if not isinstance(buttons, list) or not buttons:
        return ["the menu needs 1 to 3 top-level buttons under 'button'"]
    if len(buttons) > 3:
        problems.append("the menu needs 1 to 3 top-level buttons under 'button'")
    for top in buttons:
        name = top.get("name", "")
        if not name or len(name.encode()) > 16:
            problems.append(f"top-level button {name!r}: a name of 1-16 bytes (5 Chinese characters)")
        subs = top.get("sub_button") or [top]
        if len(subs) > 5:
            problems.append(f"{name!r}: at most 5 sub-buttons")
        for item in subs:
            label = item.get("name", "")
            if item is not top and (not label or len(label.encode()) > 60):
                problems.append(f"{label!r}: a name of 1-60 bytes")
            if item.get("type") == "click" and item.get("key") not in intents:
                problems.append(f"{label!r}: click key {item.get('key')!r} is not an intent in domain.yml")
            if item.get("type") not in ("click", "view"):
                problems.append(f"{label!r}: type must be click or view")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=MENU)
    parser.add_argument("--check", action="store_true", help="check the file, create nothing")
    args = parser.parse_args(argv)
    try:
        menu = json.loads(args.file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"menu: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    intents = set(yaml.safe_load((ROOT / "domain.yml").read_text(encoding="utf-8"))["intents"])
    problems = menu_problems(menu, intents)
    if problems:
        print("menu: " + "\n      ".join(problems), file=sys.stderr)
        return 2
    if args.check:
        print(f"menu: {args.file} is valid")
        return 0
    sys.path.insert(0, str(ROOT))
    from wechatpy.exceptions import WeChatClientException

    from channels.wechat import WeChatConfig, WeChatConfigError, make_client
    from scripts.stack import _dev_settings

    try:
        client = make_client(WeChatConfig.from_credentials(_dev_settings().wechat.credentials()))
        client.menu.create(menu)
    except WeChatConfigError as exc:
        print(f"menu: configuration error: {exc}", file=sys.stderr)
        return 2
    except WeChatClientException as exc:
        print(f"menu: WeChat refused the menu: {exc.errcode} {exc.errmsg}", file=sys.stderr)
        return 1
    print(f"menu: created from {args.file.relative_to(ROOT) if args.file.is_relative_to(ROOT) else args.file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
