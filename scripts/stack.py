"""Start, watch and stop the assistant's processes: the action server and the Rasa server.

    python scripts/stack.py run     # what `make run` does after set-up

Also the library the tests and benchmarks use to start the same processes on their own ports.
"""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import requests

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.settings import ChannelSettings, WeChatSettings  # noqa: E402,F401  (WeChatSettings: re-exported)
BIN = Path(sys.executable).parent
DEV_ENV = ROOT / "var" / "dev.env"


@dataclass
class StackConfig:
    database_url: str
    tracker_db: Path
    channels: ChannelSettings
    model: Path
    rasa_port: int = 5005
    actions_port: int = 5055
    action_endpoint: Optional[str] = None  # defaults to the action server; tests put a proxy between
    log_dir: Path = ROOT / "var" / "log"
    extra_env: dict = field(default_factory=dict)

    @property
    def wechat(self) -> WeChatSettings:
        return self.channels.wechat

    @property
    def rasa_url(self) -> str:
        return f"http://127.0.0.1:{self.rasa_port}"

    @property
    def actions_url(self) -> str:
        return f"http://127.0.0.1:{self.actions_port}"

    @property
    def webhook(self) -> str:
        return f"{self.rasa_url}/webhooks/wechat/webhook"

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items()}
        env.update({
            "PYTHONPATH": str(ROOT), "RASA_TELEMETRY_ENABLED": "false", "TF_CPP_MIN_LOG_LEVEL": "2",
            "JJ_DATABASE_URL": self.database_url, "JJ_TRACKER_DB": str(self.tracker_db),
            "JJ_ACTION_ENDPOINT": self.action_endpoint or f"{self.actions_url}/webhook",
            "PYTHONWARNINGS": "ignore::DeprecationWarning",
        })
        env.update(self.channels.env())
        env.update(self.extra_env)
        return env


class Process:
    def __init__(self, name: str, cmd: list[str], env: dict, log: Path, ready_url: str,
                 ready: Callable[[requests.Response], bool] = lambda r: r.status_code == 200) -> None:
        self.name, self.cmd, self.env, self.log, self.ready_url = name, cmd, env, log, ready_url
        self.ready = ready
        self.popen: Optional[subprocess.Popen] = None

    def start(self) -> "Process":
        self.log.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.log, "ab")
        # A session of its own: Ctrl-C reaches the supervisor, which stops children in order.
        self.popen = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, stdout=fh, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        fh.close()
        return self

    def wait_ready(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}")
            try:
                if self.ready(requests.get(self.ready_url, timeout=2)):
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s:\n{self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, timeout: float = 15) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)


def _tracker_db_in_wal_mode(path: Path) -> None:
    # Rasa's SQL tracker store on SQLite commits every turn; WAL makes those commits cheap and
    # lets readers go on while one writes. The mode is stored in the file, so set it once here.
    import sqlite3

    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")


def _model_loaded(res: requests.Response) -> bool:
    # The server answers before its model is loaded; ready means a model is in place.
    return res.status_code == 200 and bool(res.json().get("model_file"))


def action_server(env: dict, port: int, log: Path, name: str = "action server") -> Process:
    # The action server has no authentication of its own: loopback only, unless told otherwise.
    return Process(name, [sys.executable, "-m", "scripts.action_server", "--actions", "actions", "--port", str(port)],
                   {**env, "SANIC_HOST": os.environ.get("JJ_ACTIONS_HOST", "127.0.0.1")}, log,
                   f"http://127.0.0.1:{port}/health")


def rasa_server(env: dict, model: Path, port: int, token: str, log: Path, endpoints: str = "endpoints.yml",
                name: str = "Rasa server") -> Process:
    return Process(name, [sys.executable, "-m", "scripts.rasa_server", "run", "--model", str(model),
                          "--interface", "127.0.0.1", "--port", str(port), "--credentials", "credentials.yml",
                          "--endpoints", endpoints, "--enable-api", "--auth-token", token],
                   env, log, f"http://127.0.0.1:{port}/status?token={token}", _model_loaded)


def start_ready(processes: list[Process], timeout: float = 30) -> None:
    """Start them all at once, then wait until each answers."""
    for proc in processes:
        proc.start()
    for proc in processes:
        proc.wait_ready(timeout)


def supervise(processes: Callable[[], list[Process]]) -> int:
    """Wait for Ctrl-C or SIGTERM (0), or for one of the processes to die (1)."""
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping:
        for proc in processes():
            if proc.popen.poll() is not None:
                print(f"{proc.name} stopped unexpectedly:\n{proc.tail()}", file=sys.stderr)
                return 1
        time.sleep(0.5)
    print("\nstopping...", flush=True)
    return 0


class Stack:
    """The action server and the Rasa server, started in that order and stopped in reverse."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.processes: list[Process] = []

    def start(self) -> "Stack":
        cfg = self.config
        _tracker_db_in_wal_mode(cfg.tracker_db)
        env = cfg.env()
        actions = action_server(env, cfg.actions_port, cfg.log_dir / "actions.log")
        rasa = rasa_server(env, cfg.model, cfg.rasa_port, cfg.wechat.rasa_api_token, cfg.log_dir / "rasa.log")
        try:
            for proc in (actions, rasa):
                proc.start()
                self.processes.append(proc)
            for proc in (actions, rasa):
                proc.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()

    def __enter__(self) -> "Stack":
        # SIGTERM's default ends this process at once and leaves both servers running, holding their
        # ports (the children have sessions of their own). Unwind as from Ctrl-C instead, so __exit__
        # stops them (an interrupt, not SystemExit: pytest would count that as one failed test and go on).
        self._previous_sigterm = None
        if threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            self._previous_sigterm = signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
        try:
            return self.start()
        except BaseException:
            self._restore_sigterm()
            raise

    def __exit__(self, *exc) -> None:
        try:
            self.stop()
        finally:
            self._restore_sigterm()

    def _restore_sigterm(self) -> None:
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None


def _interrupt_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def prepare_database(url: str, vehicles: int = 3000) -> dict:
    """Migrate to the newest schema, then add the demo records if there are none."""
    from alembic import command
    from alembic.config import Config

    from actions.records import demo

    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "actions" / "records" / "migrations"))
    cfg.attributes["database_url"] = url
    command.upgrade(cfg, "head")
    return demo.seed(url, vehicles=vehicles, if_empty=True)


STANDIN_PORTS = {"wechat": 8081, "weibo": 8082, "sms": 8083, "telegram": 8084}


def _dev_settings(rasa_url: str = "http://127.0.0.1:5005") -> ChannelSettings:
    """This machine's channel secrets: from the environment when WECHAT_TOKEN is set, else from
    var/dev.env (made once, pointing every platform at a local stand-in)."""
    if os.environ.get("WECHAT_TOKEN"):
        return ChannelSettings.from_env(os.environ)
    if DEV_ENV.exists():
        values = dict(line.split("=", 1) for line in DEV_ENV.read_text().splitlines() if "=" in line)
        if "WECHAT_TOKEN" in values and "TELEGRAM_ACCESS_TOKEN" in values:
            return ChannelSettings.from_env(values)
    local = {k: f"http://127.0.0.1:{port}" for k, port in STANDIN_PORTS.items()}
    settings = ChannelSettings.generate(local["wechat"], local["weibo"], local["sms"], local["telegram"], rasa_url)
    DEV_ENV.parent.mkdir(parents=True, exist_ok=True)
    DEV_ENV.write_text("".join(f"{k}={v}\n" for k, v in settings.env().items()))
    DEV_ENV.chmod(0o600)
    return settings


def _ingest_token() -> str:
    """The ingest API's bearer token: from the environment, else kept in var/dev.env."""
    if os.environ.get("JJ_INGEST_TOKEN"):
        return os.environ["JJ_INGEST_TOKEN"]
    text = DEV_ENV.read_text() if DEV_ENV.exists() else ""
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    if "JJ_INGEST_TOKEN" not in values:
        DEV_ENV.parent.mkdir(parents=True, exist_ok=True)
        values["JJ_INGEST_TOKEN"] = secrets.token_hex(16)
        with open(DEV_ENV, "a") as fh:
            fh.write(f"JJ_INGEST_TOKEN={values['JJ_INGEST_TOKEN']}\n")
    return values["JJ_INGEST_TOKEN"]


def _demo_staff(url: str) -> Optional[str]:
    """A supervisor account 'admin' for this machine's console, made once; its password is kept in
    var/dev.env and returned when it was just made. More accounts: python -m console.accounts add."""
    import asyncio

    from actions.records.db import Database
    from console import accounts

    async def make() -> Optional[str]:
        db = Database(url)
        try:
            if any(a.username == "admin" for a in await accounts.listing(db)):
                return None
            password = secrets.token_urlsafe(12)
            await accounts.add(db, "admin", "supervisor", password)
            return password
        finally:
            await db.dispose()

    password = asyncio.run(make())
    if password:
        DEV_ENV.parent.mkdir(parents=True, exist_ok=True)
        with open(DEV_ENV, "a") as fh:
            fh.write(f"JJ_CONSOLE_ADMIN_PASSWORD={password}\n")
    return password


def check_config(channels: ChannelSettings) -> None:
    """Every setting checked before anything starts; the message names the bad key."""
    from actions.config import ActionSettings, ConfigError
    from channels.base import ChannelConfigError
    from channels.sms import SMSConfig
    from channels.telegram import TelegramConfig
    from channels.wechat import WeChatConfig
    from channels.weibo import WeiboConfig

    try:
        ActionSettings.from_env()
        WeChatConfig.from_credentials(channels.wechat.credentials())
        WeiboConfig.from_credentials(channels.weibo.credentials())
        SMSConfig.from_credentials(channels.sms.credentials())
        TelegramConfig.from_credentials(channels.telegram.credentials())
    except (ConfigError, ChannelConfigError) as exc:
        raise SystemExit(f"configuration error: {exc}")


def _local_port(url: str) -> Optional[str]:
    return url.rsplit(":", 1)[1].split("/")[0] if url.startswith("http://127.0.0.1:") else None


def standins(channels: ChannelSettings, env: dict, log_dir: Path) -> list[Process]:
    """Local stand-ins for the platform APIs that point at this machine."""
    procs = []
    wechat, weibo, sms, telegram = channels.wechat, channels.weibo, channels.sms, channels.telegram
    port = _local_port(wechat.api_base)
    if port:
        procs.append(Process("WeChat API stand-in", [sys.executable, "-m", "tests.support.wechat_api", "--port", port,
                                                     "--app-id", wechat.app_id, "--app-secret", wechat.app_secret],
                             env, log_dir / "wechat_api.log", f"{wechat.api_base}/_standin/inbox"))
    port = _local_port(weibo.api_base_url)
    if port:
        procs.append(Process("Weibo API stand-in", [sys.executable, "-m", "tests.support.weibo_api", "--port", port,
                                                    "--access-token", weibo.access_token],
                             env, log_dir / "weibo_api.log", f"{weibo.api_base_url}/_standin/inbox"))
    port = _local_port(sms.aliyun_endpoint)
    if port:
        procs.append(Process("SMS gateways stand-in", [
            sys.executable, "-m", "tests.support.sms_gateways", "--port", port,
            "--aliyun-key-id", sms.aliyun_access_key_id, "--aliyun-key-secret", sms.aliyun_access_key_secret,
            "--aliyun-sign-name", sms.aliyun_sign_name, "--aliyun-template", sms.aliyun_template_code,
            "--twilio-sid", sms.twilio_account_sid, "--twilio-token", sms.twilio_auth_token,
            "--twilio-from", sms.twilio_from], env, log_dir / "sms_gateways.log",
            f"{sms.aliyun_endpoint}/_standin/sent?phone=00000000000"))
    port = _local_port(telegram.api_base_url)
    if port:
        procs.append(Process("Telegram Bot API stand-in", [
            sys.executable, "-m", "tests.support.telegram_api", "--port", port, "--token", telegram.access_token,
            "--username", telegram.verify], env, log_dir / "telegram_api.log",
            f"{telegram.api_base_url}/_standin/calls"))
    return procs


def run() -> int:
    from scripts.train import train

    rasa_port = int(os.environ.get("JJ_RASA_PORT", "5005"))
    channels = _dev_settings(f"http://127.0.0.1:{rasa_port}")
    check_config(channels)
    from actions.records.db import database_url
    url = database_url()
    counts = prepare_database(url)
    print("records: " + (", ".join(f"{n} {k}" for k, n in counts.items()) if counts
                         else "migrated; demo records already present"), flush=True)
    model = train()
    config = StackConfig(database_url=url, tracker_db=ROOT / "var" / "tracker.db", channels=channels,
                         model=model, rasa_port=rasa_port,
                         actions_port=int(os.environ.get("JJ_ACTIONS_PORT", "5055")))
    helpers = standins(channels, config.env(), config.log_dir)
    ingest_port = os.environ.get("JJ_INGEST_PORT", "8090")
    helpers.append(Process("push dispatcher", [sys.executable, "-m", "bots"],
                           {**config.env(), "JJ_INGEST_TOKEN": _ingest_token(), "JJ_INGEST_PORT": ingest_port},
                           config.log_dir / "bots.log", f"http://127.0.0.1:{ingest_port}/health"))
    console_port = os.environ.get("JJ_CONSOLE_PORT", "8095")
    staff_password = _demo_staff(url)
    helpers.append(Process("staff console", [sys.executable, "-m", "console"],
                           {**config.env(), "JJ_CONSOLE_PORT": console_port, "RASA_URL": config.rasa_url,
                            "RASA_API_TOKEN": channels.rasa_api_token},
                           config.log_dir / "console.log", f"http://127.0.0.1:{console_port}/login"))
    stack = Stack(config)
    try:
        start_ready(helpers)
        print("starting the action server and the Rasa server (about a minute)...", flush=True)
        stack.start()
        hooks = f"{config.rasa_url}/webhooks"
        print(f"\naction server   {config.actions_url}  (log: var/log/actions.log)")
        print(f"Rasa server     {config.rasa_url}  (log: var/log/rasa.log)")
        print(f"WeChat          {hooks}/wechat/webhook  (mode {channels.wechat.mode})")
        print(f"Weibo           {hooks}/weibo/webhook")
        print(f"SMS             {hooks}/sms/twilio, {hooks}/sms/aliyun/<secret>, {hooks}/sms/generic")
        print(f"Telegram        {hooks}/telegram/webhook")
        print(f"ingest API      http://127.0.0.1:{ingest_port}/ingest/violations  (push dispatcher; "
              "Bearer token JJ_INGEST_TOKEN in var/dev.env; log var/log/bots.log)")
        local = [p.name.replace(" stand-in", "") for p in helpers if p.name.endswith("stand-in")]
        print("secrets         var/dev.env; platform APIs: " + (", ".join(local) + " are local stand-ins" if local else "real"))
        print(f"staff console   http://127.0.0.1:{console_port}/  (user admin, supervisor"
              + (f", password {staff_password}" if staff_password else ": password in var/dev.env") + ")")
        print(f"records         {url}")
        print("\nTalk to it:     make chat        (a WeChat user on this terminal)")
        print("Stop:           Ctrl-C\n", flush=True)
        return supervise(lambda: stack.processes + helpers)
    finally:
        stack.stop()
        for proc in helpers:
            proc.stop()
        print("stopped.", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "run":
        sys.exit(run())
    print(__doc__)
