"""Simulated people writing to the assistant on WeChat, Weibo and SMS, for locust.

    .venv/bin/locust -f bench/locustfile.py --headless -u 20 -r 5 -t 60s --host http://127.0.0.1:5005 \\
        --env-file var/dev.env [--vehicles FILE.json] [--think 2] [--wrong-log FILE.json]

bench/inbound_load.py runs this in steps of increasing users; run it by hand against a running
stack (`make run` writes var/dev.env). --host is the base URL in front of /webhooks/; --env-file
holds the channel secrets and the platform API (stand-in) URLs in var/dev.env's KEY=VALUE format.

Each user is one person on one channel (its own openid, Weibo uid or phone), going through a mix of
conversations with think time between messages: greetings, common questions, a violation query with
proof (vehicles from --vehicles, written by the runner from the seeded records), a broken-signal
report, subscribe then unsubscribe. Every message is one locust request named after its step,
timed until the whole answer reached the platform (passive reply, or the stand-in API's receipt of
the last piece). It succeeds only for a real answer: HTTP 200, not empty, not the busy or "held" text,
and containing what the step's answer must say. After a failure the person gives up and a new one
starts. Only sync code runs here (requests, wechatpy's crypto): locust monkey-patches with gevent.
"""
from __future__ import annotations

import json
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import requests
from locust import User, events, task

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.settings import ChannelSettings  # noqa: E402  (plain dataclasses)
from tests.support.channel_clients import ChannelClient, SMSClient, WeChatClient, WeiboClient  # noqa: E402
from tests.support.sms_user import AliyunGateway, GenericGateway, TwilioGateway  # noqa: E402
from tests.support.wechat_user import WeChatPlatform  # noqa: E402
from tests.support.weibo_user import WeiboPlatform  # noqa: E402

# Not answers: the busy text of channels/base.py and the "held, answer comes later" text of
# channels/redelivery.py, in both scripts (the channels answer in the user's script).
BUSY = {"busy answer": ("系统繁忙", "系統繁忙"), "held answer": ("系统暂时繁忙", "系統暫時繁忙")}
# Stand-ins are asked for late answers this often: often enough not to wait long, rarely enough
# that hundreds of users do not load them (answers are timed by the stand-in's receipt anyway).
POLL_INTERVAL = 0.1
DEMO_VEHICLES = [{"plate": "鲁B12345", "proofs": ["672418", "719034"]},
                 {"plate": "鲁BD12345", "proofs": ["305517"]}, {"plate": "鲁B88888", "proofs": ["880123"]},
                 {"plate": "鲁B12345D", "proofs": ["504871"]}]

FAQS = [("罚款怎么交", "12123"), ("驾照记分规则是什么", "记分"), ("学法减分怎么弄", "减分"),
        ("私家车几年年检一次", "检验"), ("驾照到期了怎么换", "换"), ("外地违章在本地能处理吗", "外地"),
        ("随手拍有什么要求", "随手拍"), ("驾考包过是真的吗", "诈骗"), ("远程处理怎么用", "远程")]
PLACES = ["香港中路与山东路路口", "辽宁路与延安三路路口", "海尔路与株洲路路口", "长江中路与井冈山路路口",
          "正阳路与春阳路路口"]


@dataclass
class Step:
    name: str
    text: str
    expect: tuple[str, ...]  # every one must be in the answer


Conversation = Callable[[random.Random, bool], list[Step]]  # (rng, on SMS) -> steps


def greeting(rng: random.Random, sms: bool) -> list[Step]:
    return [Step("greet", rng.choice(["你好", "您好", "在吗"]), ("查违章",)),
            Step("thanks", rng.choice(["谢谢", "好的谢谢"]), ("不客气",))]


def faq(rng: random.Random, sms: bool) -> list[Step]:
    return [Step("faq", q, (word,)) for q, word in rng.sample(FAQS, rng.choice((1, 1, 2)))]


def violation_query(rng: random.Random, sms: bool) -> list[Step]:
    vehicle = rng.choice(VEHICLES)
    plate = vehicle["plate"]
    ask = rng.choice(["查一下{}的违章", "查违章{}", "{}有没有违章"]).format(plate)
    return [Step("query", ask, ("后6位",)), Step("proof", rng.choice(vehicle["proofs"]), (plate, "未处理"))]


def broken_signal(rng: random.Random, sms: bool) -> list[Step]:
    where = rng.choice(PLACES)
    return [Step("report", f"{where}的红绿灯不亮了", ("照片",)), Step("no-photo", "没有", ("编号 R",))]


def unsubscribe(rng: random.Random, sms: bool) -> list[Step]:
    if sms:  # 订阅 / TD are handled by the SMS channel before NLU
        return [Step("subscribe", "订阅", ("订阅成功",)), Step("unsubscribe", "TD", ("退订",))]
    return [Step("subscribe", "订阅提醒", ("哪个渠道",)), Step("channel", "1", ("订阅成功",)),
            Step("unsubscribe", "退订", ("已退订",))]


# How often each conversation starts: most people query or ask, a few report or unsubscribe.
MIX: list[tuple[Conversation, int]] = [(greeting, 25), (faq, 30), (violation_query, 30), (broken_signal, 8),
                                       (unsubscribe, 7)]
VEHICLES: list[dict] = DEMO_VEHICLES
SETTINGS: Optional[ChannelSettings] = None
WRONG: list[dict] = []  # a sample of failed answers, written to --wrong-log at the end


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    parser.add_argument("--env-file", default=os.environ.get("JJ_LOAD_ENV", str(ROOT / "var" / "dev.env")),
                        help="channel secrets and platform API URLs, KEY=VALUE lines as in var/dev.env")
    parser.add_argument("--vehicles", default=os.environ.get("JJ_LOAD_VEHICLES", ""),
                        help='JSON list of {"plate", "proofs"}; default: the four README vehicles')
    parser.add_argument("--think", type=float, default=2.0, help="mean pause in seconds before each message")
    parser.add_argument("--wrong-log", default="", help="write a sample of failed answers here (JSON)")


def read_env_file(path: str) -> dict:
    lines = Path(path).read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.lstrip().startswith("#"))


@events.init.add_listener
def _load(environment, **_) -> None:
    global SETTINGS, VEHICLES
    options = environment.parsed_options
    if options is None:
        return
    SETTINGS = ChannelSettings.from_env(read_env_file(options.env_file))
    if options.vehicles:
        VEHICLES = json.loads(Path(options.vehicles).read_text())


@events.quitting.add_listener
def _write_wrong(environment, **_) -> None:
    path = environment.parsed_options.wrong_log if environment.parsed_options else ""
    if path:
        Path(path).write_text(json.dumps(WRONG, ensure_ascii=False, indent=1))


def judge(status: int, text: str, step: Step) -> Optional[str]:
    """Why the answer is not a real answer to the step, or None when it is."""
    if status != 200:
        return f"HTTP {status}"
    if not text.strip():
        return "no answer"
    for problem, markers in BUSY.items():
        if any(m in text for m in markers):
            return problem
    if not all(e in text for e in step.expect):
        return f"unexpected answer to {step.name}"
    return None


class Person(User):
    """One person on one channel; subclasses make the channel client."""
    abstract = True
    label = ""
    sms = False

    def make(self) -> ChannelClient:
        raise NotImplementedError

    @property
    def webhooks(self) -> str:
        return self.host.rstrip("/") + "/webhooks"

    def on_start(self) -> None:
        self.rng = random.Random()
        self.think = self.environment.parsed_options.think if self.environment.parsed_options else 2.0
        self.talker = self.new_person()

    def new_person(self) -> ChannelClient:
        talker = self.make()
        talker.poll_interval = POLL_INTERVAL
        return talker

    def wait_time(self) -> float:
        return self.rng.uniform(0.5 * self.think, 1.5 * self.think)

    @task
    def converse(self) -> None:
        conversation = self.rng.choices([c for c, _ in MIX], weights=[w for _, w in MIX])[0]
        for i, step in enumerate(conversation(self.rng, self.sms)):
            if i:
                time.sleep(self.wait_time())
            if not self.send(step):
                self.talker = self.new_person()  # gives up; the next conversation is someone new
                return
        if conversation is unsubscribe:
            self.talker = self.new_person()

    def send(self, step: Step) -> bool:
        started = time.perf_counter()
        try:
            answer = self.talker.say(step.text, timeout=20)
        except (requests.RequestException, ValueError) as exc:  # ValueError: a reply that is not JSON/XML
            status, text, elapsed = 0, f"{type(exc).__name__}: {exc}", time.perf_counter() - started
            problem = type(exc).__name__
        else:
            status, text, elapsed = answer.status, answer.text, answer.elapsed
            problem = judge(status, text, step)
        events.request.fire(request_type=self.label, name=step.name, response_time=elapsed * 1000,
                            response_length=len(text.encode()), context={},
                            exception=AssertionError(problem) if problem else None)
        if problem and len(WRONG) < 50:
            WRONG.append({"channel": self.label, "step": step.name, "sent": step.text, "problem": problem,
                          "status": status, "answer": text[:300]})
        return problem is None


class WeChatPerson(Person):
    weight = 5
    label = "wechat"

    def make(self) -> ChannelClient:
        w = SETTINGS.wechat
        return WeChatClient(WeChatPlatform(f"{self.webhooks}/wechat/webhook", w.token, w.app_id, w.aes_key, w.mode),
                            w.api_base)


class WeiboPerson(Person):
    weight = 2
    label = "weibo"

    def make(self) -> ChannelClient:
        return WeiboClient(WeiboPlatform(f"{self.webhooks}/weibo/webhook", SETTINGS.weibo.app_secret),
                           SETTINGS.weibo.api_base_url)


class TwilioTexter(Person):
    weight = 1
    label = "sms-twilio"
    sms = True

    def make(self) -> ChannelClient:
        s = SETTINGS.sms
        signed = (s.public_url.rstrip("/") + "/webhooks/sms/twilio") if s.public_url else None
        return SMSClient(TwilioGateway(f"{self.webhooks}/sms/twilio", s.twilio_auth_token, signed_url=signed),
                         s.aliyun_endpoint)


class AliyunTexter(Person):
    weight = 1
    label = "sms-aliyun"
    sms = True

    def make(self) -> ChannelClient:
        s = SETTINGS.sms
        return SMSClient(AliyunGateway(f"{self.webhooks}/sms/aliyun/{s.aliyun_path_secret}"), s.aliyun_endpoint)


class GenericTexter(Person):
    weight = 1
    label = "sms-generic"
    sms = True

    def make(self) -> ChannelClient:
        s = SETTINGS.sms
        return SMSClient(GenericGateway(f"{self.webhooks}/sms/generic", s.generic_secret), s.aliyun_endpoint)
