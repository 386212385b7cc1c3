"""The production shape on one machine: PostgreSQL and Redis (Debian's packages, our own instances),
nginx in front of two Rasa servers (SQL tracker store on PostgreSQL, Redis lock store), two action
servers behind the same nginx, two push dispatchers with their ingest APIs, the staff console and the
platform stand-ins.

    python -m scripts.prod run            # what `make prod` does after set-up (Ctrl-C stops it)

Also the library the fault tests and the load benchmark use (`ProdShape`), with a port base of
their own so that it never meets `make run` or another test.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.settings import ChannelSettings  # noqa: E402
from scripts.stack import (STANDIN_PORTS, Process, StackConfig, action_server, check_config,  # noqa: E402
                           prepare_database, rasa_server, standins, supervise)

# Offsets from the port base; `make prod` uses base 7000 (nginx on 7080).
PORTS = {"nginx": 80, "actions_lb": 150, "rasa": (105, 106), "actions": (155, 156), "ingest": (190, 191),
         "postgres": 432, "redis": 379, "console": 95, **{f"standin_{k}": v - 8000 for k, v in STANDIN_PORTS.items()}}


class ProdSetupError(RuntimeError):
    pass


def _apt_install(*packages: str) -> None:
    if os.geteuid() != 0:
        raise ProdSetupError(f"{' '.join(packages)} missing: install with apt-get install {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True, env=env)


def postgres_bin() -> Path:
    """The newest PostgreSQL's binaries from Debian's packages, installed when missing."""
    def newest() -> Optional[Path]:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
        return found[-1].parent if found else None

    if newest() is None:
        _apt_install("postgresql")
    return newest()


def binary(name: str, package: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if path is None:
        _apt_install(package)
        path = shutil.which(name) or f"/usr/sbin/{name}"
    return path


def _as_postgres(cmd: List[str]) -> List[str]:
    # PostgreSQL refuses to run as root; Debian's package made the postgres user.
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


class PostgresInstance:
    """A PostgreSQL cluster of our own: initdb once into a data directory, then pg_ctl start/stop."""

    def __init__(self, data: Path, port: int, log: Path) -> None:
        self.data, self.port, self.log = data, port, log
        self.bin = postgres_bin()

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str, driver: str = "postgresql+asyncpg") -> str:
        return f"{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def _own(self, path: Path) -> None:
        if os.geteuid() == 0:
            shutil.chown(path, "postgres", "postgres")

    def init(self) -> None:
        if (self.data / "PG_VERSION").exists():
            return
        self.data.mkdir(parents=True, exist_ok=True)
        self._own(self.data)
        subprocess.run(_as_postgres([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                                     "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"]),
                       check=True, stdout=subprocess.DEVNULL)

    def start(self) -> None:
        self.init()
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.log.touch()
        self._own(self.log)
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' "
                   "-c max_connections=300 -c shared_buffers=256MB -c fsync=on")
        subprocess.run(_as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                                     "-o", options, "-w", "-t", "60", "start"]),
                       check=True, stdout=subprocess.DEVNULL)

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(_as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"]),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def create_database(self, name: str) -> None:
        import psycopg2

        conn = psycopg2.connect(self.admin_url, connect_timeout=5)
        conn.autocommit = True
        try:
            cur = conn.cursor()
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()


@dataclass
class ProdConfig:
    model: Path
    base: int = 7000
    var: Path = ROOT / "var" / "prod"
    rasa_servers: int = 2
    action_servers: int = 2
    dispatchers: int = 2
    extra_env: Dict[str, str] = field(default_factory=dict)
    pg_dir: Optional[Path] = None  # PostgreSQL's data directory; see pg_data

    def port(self, name: str, index: int = 0) -> int:
        offset = PORTS[name]
        return self.base + (offset[index] if isinstance(offset, tuple) else offset)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port('nginx')}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.port('redis')}/0"

    @property
    def log_dir(self) -> Path:
        return self.var / "log"

    @property
    def pg_data(self) -> Path:
        if self.pg_dir is not None:
            return self.pg_dir
        # As root the cluster lives where the postgres user can reach it.
        return (Path("/var/tmp") / f"jiaojing-pg-{self.base}") if os.geteuid() == 0 else self.var / "pg"


class ProdShape:
    """Start, stop and break the production shape. Every process is ours to kill."""

    def __init__(self, config: ProdConfig) -> None:
        self.config = config
        cfg = config
        cfg.var.mkdir(parents=True, exist_ok=True)
        # The log sits beside the data, where the postgres user can write (not always under var/).
        self.postgres = PostgresInstance(cfg.pg_data, cfg.port("postgres"),
                                         cfg.pg_data.parent / f"{cfg.pg_data.name}.log")
        self.channels = self._channel_settings()
        self.records_url = self.postgres.url("jiaojing")
        self.processes: Dict[str, Process] = {}

    # -- configuration ---------------------------------------------------------------------

    def _channel_settings(self) -> ChannelSettings:
        env_file = self.config.var / "prod.env"
        if env_file.exists():
            values = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
            settings = ChannelSettings.from_env(values)
        else:
            local = {k: f"http://127.0.0.1:{self.config.port(f'standin_{k}')}" for k in STANDIN_PORTS}
            settings = ChannelSettings.generate(local["wechat"], local["weibo"], local["sms"], local["telegram"],
                                                self.config.url)
        # Retries, the WeChat access token and each user's numbered choices are shared by every server.
        shared = self.config.redis_url
        settings.wechat.dedup = settings.wechat.token_store = shared
        settings.weibo.dedup = settings.sms.dedup = settings.telegram.dedup = shared
        env_file.write_text("".join(f"{k}={v}\n" for k, v in settings.env().items()))
        env_file.chmod(0o600)
        return settings

    def env(self) -> dict:
        cfg = self.config
        base = StackConfig(database_url=self.records_url, tracker_db=cfg.var / "unused-tracker.db",
                           channels=self.channels, model=cfg.model,
                           action_endpoint=f"http://127.0.0.1:{cfg.port('actions_lb')}/webhook").env()
        base.update({
            "JJ_TRACKER_PG_HOST": "127.0.0.1", "JJ_TRACKER_PG_PORT": str(cfg.port("postgres")),
            "JJ_TRACKER_PG_DB": "rasa_tracker", "JJ_TRACKER_PG_USER": "postgres", "JJ_TRACKER_PG_PASSWORD": "",
            "JJ_TRACKER_PG_LOGIN_DB": "postgres",
            "JJ_LOCK_REDIS_HOST": "127.0.0.1", "JJ_LOCK_REDIS_PORT": str(cfg.port("redis")), "JJ_LOCK_REDIS_DB": "1",
            # A turn never takes this long; a killed server's ticket must not hold its users for a minute.
            "TICKET_LOCK_LIFETIME": "15",
            "SQL_POOL_SIZE": "10", "SQL_MAX_OVERFLOW": "20",
        })
        base.update(cfg.extra_env)
        return base

    def _nginx_conf(self) -> Path:
        cfg = self.config
        run = cfg.var / "nginx"
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (run / sub).mkdir(parents=True, exist_ok=True)
        cfg.log_dir.mkdir(parents=True, exist_ok=True)

        def servers(name: str, count: int) -> str:
            return "\n".join(f"        server 127.0.0.1:{cfg.port(name, i)} max_fails=1 fail_timeout=5s;"
                             for i in range(count))

        text = (ROOT / "deploy" / "nginx.conf.template").read_text().format(
            run=run, log=cfg.log_dir, port=cfg.port("nginx"), actions_port=cfg.port("actions_lb"),
            rasa_servers=servers("rasa", cfg.rasa_servers), action_servers=servers("actions", cfg.action_servers),
            ingest_servers=servers("ingest", cfg.dispatchers))
        conf = run / "nginx.conf"
        conf.write_text(text)
        return conf

    # -- processes --------------------------------------------------------------------------

    def _redis(self) -> Process:
        cfg = self.config
        return Process("Redis", [binary("redis-server", "redis-server"), "--port", str(cfg.port("redis")),
                                 "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                       self.env(), cfg.log_dir / "redis.log", "", ready=None)

    def _nginx(self) -> Process:
        conf = self._nginx_conf()
        return Process("nginx", [binary("nginx", "nginx-light"), "-c", str(conf), "-p", str(conf.parent)],
                       self.env(), self.config.log_dir / "nginx.log", f"{self.config.url}/health")

    def action_server(self, i: int) -> Process:
        return action_server(self.env(), self.config.port("actions", i), self.config.log_dir / f"actions-{i + 1}.log",
                             f"action server {i + 1}")

    def rasa_server(self, i: int) -> Process:
        return rasa_server(self.env(), self.config.model, self.config.port("rasa", i), self.channels.rasa_api_token,
                           self.config.log_dir / f"rasa-{i + 1}.log", str(ROOT / "deploy" / "endpoints.prod.yml"),
                           f"Rasa server {i + 1}")

    def dispatcher(self, i: int) -> Process:
        cfg = self.config
        port = cfg.port("ingest", i)
        return Process(f"push dispatcher {i + 1}", [sys.executable, "-m", "bots"],
                       {**self.env(), "JJ_INGEST_TOKEN": self.ingest_token, "JJ_INGEST_PORT": str(port)},
                       cfg.log_dir / f"bots-{i + 1}.log", f"http://127.0.0.1:{port}/health")

    def console(self) -> Process:
        cfg = self.config
        port = cfg.port("console")
        return Process("staff console", [sys.executable, "-m", "console"],
                       {**self.env(), "JJ_CONSOLE_PORT": str(port), "RASA_URL": self.config.url,
                        "RASA_API_TOKEN": self.channels.rasa_api_token},
                       cfg.log_dir / "console.log", f"http://127.0.0.1:{port}/login")

    @property
    def ingest_token(self) -> str:
        path = self.config.var / "ingest.token"
        if not path.exists():
            import secrets

            path.write_text(secrets.token_hex(16))
            path.chmod(0o600)
        return path.read_text().strip()

    def _launch(self, key: str, proc: Process, timeout: float = 240) -> Process:
        self.processes[key] = proc.start()
        if proc.ready_url:
            proc.wait_ready(timeout)
        return proc

    def start(self, console: bool = True) -> "ProdShape":
        cfg = self.config
        check_config(self.channels)
        try:
            self.postgres.start()
            for name in ("jiaojing", "rasa_tracker"):
                self.postgres.create_database(name)
            prepare_database(self.records_url)
            self._launch("redis", self._redis())
            self.wait_redis()
            for proc in standins(self.channels, self.env(), cfg.log_dir):
                self._launch(proc.name, proc, 30)
            for i in range(cfg.action_servers):
                self.processes[f"actions-{i}"] = self.action_server(i).start()
            for i in range(cfg.rasa_servers):
                self.processes[f"rasa-{i}"] = self.rasa_server(i).start()
            for i in range(cfg.dispatchers):
                self.processes[f"bots-{i}"] = self.dispatcher(i).start()
            if console:
                self.processes["console"] = self.console().start()
            for proc in list(self.processes.values()):
                if proc.ready_url:
                    proc.wait_ready()
            self._launch("nginx", self._nginx(), 20)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_redis(self, timeout: float = 20) -> None:
        import redis

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                redis.Redis.from_url(self.config.redis_url, socket_timeout=1).ping()
                return
            except redis.RedisError:
                time.sleep(0.2)
        raise ProdSetupError(f"Redis not up on {self.config.redis_url}:\n{self.processes['redis'].tail()}")

    def restart(self, key: str, timeout: float = 240) -> Process:
        """Start a process that was stopped or killed, as it was started the first time."""
        make = {"redis": self._redis, "nginx": self._nginx, "console": self.console}
        kind, _, index = key.partition("-")
        proc = make[key]() if key in make else {"actions": self.action_server, "rasa": self.rasa_server,
                                                 "bots": self.dispatcher}[kind](int(index))
        self._launch(key, proc, timeout)
        if key == "redis":
            self.wait_redis()
        return proc

    def kill(self, key: str) -> None:
        """kill -9: no goodbye, no cleanup."""
        proc = self.processes[key]
        if proc.popen.poll() is None:
            os.killpg(proc.popen.pid, signal.SIGKILL)
            proc.popen.wait(10)

    def stop(self) -> None:
        for key in reversed(list(self.processes)):
            self.processes[key].stop()
        self.processes.clear()
        self.postgres.stop()

    def __enter__(self) -> "ProdShape":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def run() -> int:
    from scripts.train import train

    cfg = ProdConfig(model=train(), base=int(os.environ.get("JJ_PROD_PORT_BASE", "7000")))
    shape = ProdShape(cfg)
    print("starting PostgreSQL, Redis, 2 action servers, 2 Rasa servers, 2 dispatchers, nginx "
          "(about a minute)...", flush=True)
    shape.start()
    try:
        hooks = f"{cfg.url}/webhooks"
        print(f"\nload balancer   {cfg.url}  (nginx; log: {cfg.log_dir}/nginx-*.log)")
        for i in range(cfg.rasa_servers):
            print(f"Rasa server {i + 1}   http://127.0.0.1:{cfg.port('rasa', i)}  (log: rasa-{i + 1}.log)")
        for i in range(cfg.action_servers):
            print(f"action server {i + 1} http://127.0.0.1:{cfg.port('actions', i)}  (behind "
                  f"http://127.0.0.1:{cfg.port('actions_lb')})")
        for i in range(cfg.dispatchers):
            print(f"dispatcher {i + 1}    http://127.0.0.1:{cfg.port('ingest', i)}/ingest  (behind {cfg.url}/ingest/)")
        print(f"PostgreSQL      {shape.postgres.url('jiaojing')} (records), rasa_tracker (Rasa's tracker store)")
        print(f"Redis           {cfg.redis_url} (lock store db 1; retries, tokens, choices db 0)")
        print(f"WeChat          {hooks}/wechat/webhook   Weibo {hooks}/weibo/webhook   SMS {hooks}/sms/...")
        print(f"secrets         {cfg.var}/prod.env (channels), {cfg.var}/ingest.token")
        print(f"staff console   http://127.0.0.1:{cfg.port('console')}/")
        print("\nStop:           Ctrl-C\n", flush=True)
        return supervise(lambda: list(shape.processes.values()))
    finally:
        shape.stop()
        print("stopped.", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "run":
        sys.exit(run())
    print(__doc__)
