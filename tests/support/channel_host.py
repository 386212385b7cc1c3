"""Host one input channel on a real Sanic server in a background thread, with an in-process
agent in Rasa's place: the channel's whole HTTP protocol is exercised without training a model.
"""
from __future__ import annotations

import asyncio
import itertools
import threading

from rasa.core.channels.channel import InputChannel, UserMessage
from sanic import Sanic

from tests.support.background import free_port

_names = itertools.count()


class EchoAgent:
    """Answers like a tiny bot: "slow:N" sleeps N seconds, "boom" fails, "buttons" offers two
    choices, "long" answers with more than one WeChat message can carry; else it echoes."""

    def __init__(self) -> None:
        self.received: list[UserMessage] = []

    async def __call__(self, message: UserMessage) -> None:
        self.received.append(message)
        text, out, who = message.text, message.output_channel, message.sender_id
        if text.startswith("slow:"):
            await asyncio.sleep(float(text[5:]))
        if text == "boom":
            raise RuntimeError("the agent failed")
        if text == "buttons":
            await out.send_text_with_buttons(who, "请选择：", [
                {"title": "查违章", "payload": "/query_violations"}, {"title": "帮助", "payload": "/help"}])
        elif text == "long":
            await out.send_text_message(who, "\n".join(f"第{i}行：" + "违法记录" * 20 for i in range(30)))
        else:
            await out.send_text_message(who, f"收到：{text}")

    def texts(self) -> list[str]:
        return [m.text for m in self.received]


class ChannelHost:
    """A Sanic server hosting several channels, each under its own prefix with its own agent:
    /<key>/webhooks/<channel name>/..."""

    def __init__(self, channels: dict[str, InputChannel]) -> None:
        self.port = free_port()
        # Sanic 21.12 rewrites its protocol methods (TouchUp) at each start; outside test mode the
        # second start in one process fails. Test mode keeps the originals, so hosts can come and go.
        Sanic.test_mode = True
        self.app = Sanic(f"channel_host_{next(_names)}")
        self.urls: dict[str, str] = {}
        self.agents: dict[str, EchoAgent] = {}
        for key, channel in channels.items():
            agent = EchoAgent()
            prefix = f"/{key}/webhooks/{channel.name()}"
            self.app.blueprint(channel.blueprint(agent), url_prefix=prefix)
            self.urls[key] = f"http://127.0.0.1:{self.port}{prefix}"
            self.agents[key] = agent
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._server = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._server = self.loop.run_until_complete(self.app.create_server(
            host="127.0.0.1", port=self.port, return_asyncio_server=True, access_log=False))
        self.loop.run_until_complete(self._server.startup())
        self.loop.run_until_complete(self._server.start_serving())
        self._ready.set()
        self.loop.run_forever()

    def __enter__(self) -> "ChannelHost":
        threading.Thread(target=self._run, daemon=True).start()
        if not self._ready.wait(10):
            raise RuntimeError("channel host did not start")
        return self

    def __exit__(self, *exc) -> None:
        async def close() -> None:
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
