"""A real Rasa server with its HTTP API on loopback, for the console's hand-off tests: it loads an
already trained model (never trains one) with an in-memory tracker store and no action server;
the tracker endpoints (events, pause, resume) are all the console uses."""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import requests

from tests.support.background import free_port

ROOT = Path(__file__).resolve().parents[2]


def newest_model() -> Optional[Path]:
    """The model for the current inputs if trained, else the newest one in models/."""
    from scripts.train import model_path

    current = model_path()
    if current.exists():
        return current
    models = sorted((ROOT / "models").glob("*.tar.gz"), key=lambda p: p.stat().st_mtime)
    return models[-1] if models else None


class RasaAPI:
    def __init__(self, model: Path, workdir: Path) -> None:
        self.model, self.workdir = model, workdir
        self.port, self.token = free_port(), secrets.token_hex(16)  # never starts with "-" (argparse)
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: Optional[subprocess.Popen] = None

    def __enter__(self) -> "RasaAPI":
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "credentials.yml").write_text("{}\n")
        (self.workdir / "endpoints.yml").write_text("{}\n")
        log = open(self.workdir / "rasa.log", "ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("JJ_")}
        env["PYTHONPATH"] = str(ROOT)  # the model names the project's own NLU components
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rasa", "run", "--enable-api", "--auth-token", self.token, "-m", str(self.model),
             "-i", "127.0.0.1", "-p", str(self.port), "--credentials", "credentials.yml",
             "--endpoints", "endpoints.yml"], cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Rasa exited: see {self.workdir / 'rasa.log'}")
            try:
                status = requests.get(f"{self.url}/status", params={"token": self.token}, timeout=2)
                if status.ok and status.json().get("model_file"):
                    return self
            except requests.RequestException:
                pass
            time.sleep(1)
        self.__exit__()
        raise RuntimeError("Rasa did not load its model within 300 s")

    def events(self, sender: str, events: list) -> None:
        res = requests.post(f"{self.url}/conversations/{sender}/tracker/events", params={"token": self.token},
                            json=events, timeout=10)
        res.raise_for_status()

    def tracker(self, sender: str) -> dict:
        res = requests.get(f"{self.url}/conversations/{sender}/tracker", params={"token": self.token}, timeout=10)
        res.raise_for_status()
        return res.json()

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
