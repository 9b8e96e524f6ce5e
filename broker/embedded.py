"""The amqtt broker, run in-process on its own thread and event loop.

`edgehive up` and `edgehive broker` use it so that a laptop needs no Mosquitto. amqtt
does not send wills on silent death, queue QoS 1 for offline sessions or redeliver
unacknowledged messages (measured), which is why edgehive's own leases and
heartbeats carry every guarantee; production fleets should run Mosquitto
(`broker/mosquitto.conf`).
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import threading
from pathlib import Path
from typing import Any

from ..errors import EdgehiveError
from .accounts import amqtt_plugins, parse_users

log = logging.getLogger(__name__)

_SHUTDOWN_BOUND_S = 3.0


class BrokerStartError(EdgehiveError, RuntimeError):
    """The embedded broker could not start (its port taken, most often by a broker already
    running there, or an address that is not this machine's): said in one line by the command,
    not as a traceback."""


class _NoStartupTraceback(logging.Filter):
    """amqtt logs its own failed start with a traceback; `start()` raises BrokerStartError
    with the same reason, which the commands print as one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Broker startup failed"


logging.getLogger("amqtt.broker").addFilter(_NoStartupTraceback())


def _patched_broker_class() -> type:
    """amqtt 0.12.1 with one fix: on every connect it sends the new client the retained
    messages matching *any* client's subscriptions, and meanwhile holds back that client's
    own publishes (a quick `mosquitto_pub` lost its message). Retained messages are only
    sent for filters the connecting session itself holds, as MQTT-3.3.1-6 says.
    Imported lazily: only the process that runs the broker pays for amqtt.
    """
    from amqtt.broker import Broker

    class PatchedBroker(Broker):  # type: ignore[misc]  # amqtt has no type information: its classes are Any
        """Also remembers every client socket, because amqtt's shutdown leaves some open."""

        async def stream_connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, listener_name: str) -> None:
            self.__dict__.setdefault("edgehive_writers", set()).add(writer)
            try:
                await super().stream_connected(reader, writer, listener_name)
            finally:
                writer.close()
                self.edgehive_writers.discard(writer)

        async def _publish_retained_messages_for_subscription(self, subscription: tuple[str, int], session: Any) -> None:
            holders = self._subscriptions.get(subscription[0], [])
            if any(s.client_id == session.client_id for s, _ in holders):
                await super()._publish_retained_messages_for_subscription(subscription, session)

    return PatchedBroker


class EmbeddedBroker:
    """Start with `start()` (or `with EmbeddedBroker(...) as broker:`); `port=0` picks a free port.

    `users` (EDGEHIVE_BROKER_USERS's `user:password[:role[:id+id…]]`): every client must log in,
    and each account writes only what its role in broker/acl allows, as on Mosquitto. Empty:
    anyone may connect and write anything (fine on loopback; `listens_beyond_loopback` warns).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 1883, users: str = "", prefix: str = "edgehive/v1") -> None:
        self.host = host
        self.port = port
        self.accounts = parse_users(users)  # AccountError before any thread starts
        self.prefix = prefix
        self._secrets: tempfile.TemporaryDirectory[str] | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    def _config(self) -> dict[str, Any]:
        plugins: dict[str, Any] = {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}
        if self.accounts:
            self._secrets = tempfile.TemporaryDirectory(prefix="edgehive-broker-")
            plugins = amqtt_plugins(self.accounts, self.prefix, Path(self._secrets.name) / "passwd")
        return {"listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}}, "plugins": plugins}

    def start(self, timeout_s: float = 10.0) -> EmbeddedBroker:
        self._thread = threading.Thread(target=self._run, name="amqtt-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise BrokerStartError(f"the embedded broker did not start within {timeout_s:g} s")
        if self._error is not None:
            reason = self._error.__cause__ or self._error  # amqtt wraps the OSError that says it all
            hint = " (is another broker running there?)" if "already in use" in str(reason) else ""
            raise BrokerStartError(f"the embedded broker cannot listen on {self.host}:{self.port}{hint}: {reason}") from None
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        finally:
            loop.run_until_complete(self._close_transports())  # what cancelled accepts created last
            loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        try:
            broker = _patched_broker_class()(self._config(), loop=asyncio.get_running_loop())
            await broker.start()
            server = broker._servers["default"].instance  # amqtt exposes no public accessor for the bound port
            self.port = server.sockets[0].getsockname()[1]
        except BaseException as error:  # reported to start()'s caller, not lost in this thread
            self._error = error
            self._ready.set()
            return
        log.info("embedded amqtt broker listening on %s:%d", self.host, self.port)
        self._ready.set()
        await self._stop.wait()
        await self._shutdown(broker)

    async def _shutdown(self, broker: Any) -> None:
        """Stop listening first (the port is free at once, for a restart on the same port), then
        drop the clients, then let amqtt clean up, within a bound: amqtt 0.12's shutdown waits
        on every session's handler and was measured to hang for over 10 s with a fleet's
        clients still connected."""
        for server in broker._servers.values():  # no public accessor, as for the port above
            server.instance.close()
        for writer in list(getattr(broker, "edgehive_writers", ())):
            writer.close()
        try:
            await asyncio.wait_for(broker.shutdown(), _SHUTDOWN_BOUND_S)
        except (asyncio.TimeoutError, Exception) as error:  # a stop must finish whatever amqtt does
            log.warning("embedded broker shutdown did not finish cleanly (%s); closing what is left", type(error).__name__)
        await self._close_leftovers(broker)

    @staticmethod
    async def _close_leftovers(broker: Any) -> None:
        """amqtt's shutdown leaves the sockets of clients still connected (and their tasks)
        open; close them so that stopping the broker releases everything it held."""
        for writer in list(getattr(broker, "edgehive_writers", ())):
            writer.close()
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await EmbeddedBroker._close_transports()

    @staticmethod
    async def _close_transports() -> None:
        """A connection accepted while we stopped may never have reached amqtt's handler (its task
        was cancelled before or while it ran), so nothing above closed it. The selector loop keeps
        every transport it serves; close those too, then let their close callbacks run before the
        loop itself is closed (otherwise the sockets leak and warn when collected)."""
        for transport in list(getattr(asyncio.get_running_loop(), "_transports", {}).values()):
            if transport is not None and not transport.is_closing():
                transport.close()
        for _ in range(3):
            await asyncio.sleep(0)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self._secrets is not None:
            self._secrets.cleanup()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
