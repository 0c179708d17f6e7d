"""Desk commands from the web processes to the process running the ``ami`` role,
over Redis: the command is PUBLISHed (whose answer says how many processes
listen: none means the ami role is not running, said at once), the reply is
pushed onto a per-command list that the sender waits on with a deadline.

A command whose deadline has passed when it arrives is not executed: nobody
waits for it any more, and an operator's click must not take effect minutes
later. Only one process of a deployment runs the ``ami`` role.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import redis.asyncio as aioredis

from hotline.core.aio import cancel_and_wait, raise_if_cancelled
from hotline.core.desk import (
    COMMANDS_CHANNEL,
    REPLY_PREFIX,
    DeskCommand,
    DeskReply,
    DeskUnavailable,
)
from hotline.core.errors import HotlineError
from hotline.core.logs import get_logger

REPLY_TTL_SECONDS = 30
BACKEND_ERRORS = (OSError, aioredis.RedisError)
log = get_logger("crm_sync.command_bus")

Handler = Callable[[DeskCommand], Awaitable[DeskReply]]


class RedisDeskCommands:
    """:class:`~hotline.core.desk.DeskCommandPort` for the web."""

    def __init__(self, redis: aioredis.Redis, *, timeout: float = 5.0) -> None:
        self._redis = redis
        self.timeout = timeout

    async def send(self, command: DeskCommand) -> DeskReply:
        command = replace(command, id=secrets.token_hex(12),
                          deadline=time.time() + self.timeout)
        try:
            listeners = await self._redis.publish(COMMANDS_CHANNEL, command.to_json())
        except BACKEND_ERRORS as exc:
            raise DeskUnavailable(f"cannot reach Redis to send the command: {exc}") from None
        if not listeners:
            raise DeskUnavailable(
                "the telephony link is not running (no process runs the ami role); "
                "nothing was done")
        try:
            answer = await self._redis.blpop([REPLY_PREFIX + command.id], timeout=self.timeout)
        except BACKEND_ERRORS as exc:
            raise DeskUnavailable(f"lost Redis while waiting for the answer: {exc}") from None
        if answer is None:
            raise DeskUnavailable(
                f"the telephony link (ami role) did not answer within {self.timeout:g} s; "
                "the action may or may not have been done")
        return DeskReply.from_json(answer[1])


class DeskCommandServer:
    """Runs in the ``ami`` role: takes commands off the channel and answers each one.

    One subscriber connection of its own (a quiet channel is no error), commands
    handled concurrently up to ``concurrency``, each reply pushed with a TTL.
    """

    def __init__(self, redis: aioredis.Redis, handler: Handler, *, concurrency: int = 16) -> None:
        self._redis = redis
        self._subscriber = _dedicated_client(redis)
        self._handler = handler
        self._slots = asyncio.Semaphore(concurrency)
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self.subscribed = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._serve_forever(), name="desk-commands")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        for task in list(self._running):
            await cancel_and_wait(task)
        await self._subscriber.aclose()

    async def _serve_forever(self) -> None:
        backoff = 0.5
        while True:
            pubsub = self._subscriber.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(COMMANDS_CHANNEL)
                raise_if_cancelled()
                self.subscribed.set()
                log.info("desk_commands_subscribed")
                backoff = 0.5
                while True:
                    message = await pubsub.get_message(timeout=None)
                    raise_if_cancelled()
                    if message is not None and message.get("type") == "message":
                        self._accept(message.get("data"))
            except BACKEND_ERRORS as exc:
                log.warning("desk_commands_lost", error=f"{type(exc).__name__}: {exc}",
                            retry_in=backoff)
            finally:
                self.subscribed.clear()
                with contextlib.suppress(*BACKEND_ERRORS):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)

    def _accept(self, data: Any) -> None:
        try:
            command = DeskCommand.from_json(data)
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("desk_command_unreadable", error=str(exc))
            return
        if not command.id:
            log.warning("desk_command_without_id", action=command.action)
            return
        if command.deadline and command.deadline < time.time():
            log.warning("desk_command_expired", action=command.action, login=command.login)
            return
        task = asyncio.create_task(self._run(command), name=f"desk-{command.action}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, command: DeskCommand) -> None:
        async with self._slots:
            try:
                reply = await self._handler(command)
            except HotlineError as exc:
                reply = DeskReply(False, exc.message, exc.error_id)
            except Exception:  # a bug: loud, and the operator is told rather than left waiting
                log.exception("desk_command_failed", action=command.action, login=command.login)
                reply = DeskReply(False, "internal error in the telephony link", "internal")
        key = REPLY_PREFIX + command.id
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.rpush(key, reply.to_json())
                pipe.expire(key, REPLY_TTL_SECONDS)
                await pipe.execute()
        except BACKEND_ERRORS as exc:
            log.warning("desk_reply_failed", action=command.action,
                        error=f"{type(exc).__name__}: {exc}")


def _dedicated_client(shared: aioredis.Redis) -> aioredis.Redis:
    """A client to the same server with a pool of its own and no read timeout."""
    pool = shared.connection_pool
    kwargs = dict(pool.connection_kwargs)
    kwargs.pop("socket_timeout", None)
    if issubclass(pool.connection_class, aioredis.Connection):  # TCP: notice a dead peer
        kwargs["socket_keepalive"] = True
    return aioredis.Redis(connection_pool=aioredis.ConnectionPool(
        connection_class=pool.connection_class, max_connections=2, **kwargs))
