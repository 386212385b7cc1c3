"""scripts/stack.py: what it leaves behind when it is told to stop."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import requests

from tests.support.background import free_port

ROOT = Path(__file__).resolve().parents[1]


def test_sigterm_to_a_stack_user_stops_its_servers(tmp_path):
    """A benchmark or a test run ended with SIGTERM (a CI timeout, `kill`) must not leave its servers
    running: they have sessions of their own, so nothing else would stop them."""
    port = free_port()
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from scripts.stack import Process, Stack

        class OneServer(Stack):
            def start(self):
                web = Process("web", [sys.executable, "-m", "http.server", "{port}", "--bind", "127.0.0.1"],
                              {{}}, Path(r"{tmp_path}") / "web.log", "http://127.0.0.1:{port}/")
                self.processes.append(web.start())
                web.wait_ready()
                return self

        with OneServer(None) as stack:
            print(stack.processes[0].popen.pid, flush=True)
            time.sleep(60)
    """)
    runner = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    server_pid = int(runner.stdout.readline())
    try:
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200
        runner.send_signal(signal.SIGTERM)
        runner.wait(timeout=30)
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/", timeout=5)
        with pytest.raises(ProcessLookupError):
            os.kill(server_pid, 0)
    finally:
        runner.kill()
        try:
            os.kill(server_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
