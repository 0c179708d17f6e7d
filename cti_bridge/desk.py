"""The operator desk on the AMI side: desk commands executed as AMI actions, and
what happens to an operator published on that operator's own channel.

- Commands (:meth:`DeskController.execute`) arrive from the web through the
  command port; each answer carries Asterisk's own words when it refused.
- The screen-pop: AgentCalled → the caller's context from the case store → one
  message on ``hotline:desk:op:<login>`` and the current pop kept in Redis with
  a TTL (a page that reconnects shows it); AgentConnect turns it "in call",
  AgentComplete ends it; a ring not answered or a caller who gave up withdraws it.
- Member events (QueueMember*) of an operator go to their channel too: the desk
  shows what Asterisk says, not what the page assumed.
- Wrap-up: after a queue call the operator is paused under the configured
  reason, and made ready again when the time is up (unless they changed it).

Event handlers never wait on the case store: the AMI dispatcher runs handlers
one after another, so each pop is a task, chained per member interface so that
"in call" never overtakes "ringing".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import redis.asyncio as aioredis

from hotline.core.aio import cancel_and_wait
from hotline.core.desk import (
    CALLBACK,
    ENDED_POP_TTL_SECONDS,
    HANGUP,
    LOGIN,
    LOGOUT,
    PAUSE,
    POP_TTL_SECONDS,
    READY,
    STATUS,
    TRANSFER_OPERATOR,
    TRANSFER_QUEUE,
    AsteriskRefused,
    CallerContext,
    DeskCommand,
    DeskConfig,
    DeskReply,
    OperatorDirectory,
    is_dialable,
    member_view,
    operator_channel,
    pop_key,
)
from hotline.core.errors import InvalidInput
from hotline.core.logs import get_logger
from hotline.core.privacy import mask_phone

from .ami_client import AmiActionError, AmiClient, AmiError
from .ami_protocol import AmiMessage
from .call_tracker import CallTracker

log = get_logger("cti_bridge.desk")
CONTEXT_TIMEOUT_SECONDS = 1.0
MEMBER_EVENTS = ("QueueMemberAdded", "QueueMemberRemoved", "QueueMemberPause",
                 "QueueMemberStatus")
#: OriginateResponse's Reason (ast_control_frame_type of the outcome).
ORIGINATE_REASONS = {"0": "no such number or channel", "1": "hung up", "3": "not answered",
                     "4": "answered", "5": "busy", "8": "congestion"}


@dataclass(frozen=True)
class Dialplan:
    """Where call control sends a call (``asterisk/etc/extensions.conf``)."""

    queue_context: str = "hotline-inbound"  # Redirect here with HOTLINE_QUEUE set…
    queue_exten: str = "1551"
    queue_priority: str = "queue"  # …to the label that queues the call
    transfer_context: str = "hotline-desk-transfer"  # Dial(${DESK_TARGET})
    transfer_exten: str = "operator"
    callback_context: str = "hotline-desk-callback"  # the citizen's number as exten
    callback_caller_id: str = '"1551" <1551>'


@dataclass
class _Call:
    uniqueid: str
    caller_channel: str
    member_channel: str


class DeskController:
    def __init__(
        self,
        ami: AmiClient,
        tracker: CallTracker,
        redis: aioredis.Redis,
        directory: OperatorDirectory,
        context: CallerContext,
        config: DeskConfig,
        *,
        queues: Mapping[str, Mapping[str, Any]] | None = None,
        dialplan: Dialplan = Dialplan(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ami = ami
        self._tracker = tracker
        self._redis = redis
        self._directory = directory
        self._context = context
        self._config = config
        self._queues = dict(queues or {})  # name → {"label": …, "sphere": …}
        self._dialplan = dialplan
        self._clock = clock
        self._pops: dict[str, dict[str, Any]] = {}  # member interface → current pop
        self._calls: dict[str, _Call] = {}  # member interface → the call it talks in
        self._chains: dict[str, asyncio.Task[None]] = {}  # member interface → last task
        self._tasks: set[asyncio.Task[None]] = set()
        self._wrapups: dict[str, asyncio.Task[None]] = {}
        self._paused_reason: dict[str, str] = {}  # interface → reason Asterisk reports
        self._originates: dict[str, str] = {}  # ChannelId → login
        self._owed: dict[str, str] = {}  # interface → a call it transferred away
        ami.on_event("AgentCalled", self._on_agent_called)
        ami.on_event("AgentConnect", self._on_agent_connect)
        ami.on_event("AgentComplete", self._on_agent_complete)
        ami.on_event("AgentRingNoAnswer", self._on_ring_no_answer)
        ami.on_event("QueueCallerAbandon", self._on_caller_gone)
        ami.on_event("OriginateResponse", self._on_originate_response)
        for name in MEMBER_EVENTS:
            ami.on_event(name, self._on_member_event)

    async def stop(self) -> None:
        for task in [*self._tasks, *self._wrapups.values()]:
            await cancel_and_wait(task)
        self._tasks.clear()
        self._wrapups.clear()
        self._chains.clear()

    # --- commands ----------------------------------------------------------------------

    async def execute(self, command: DeskCommand) -> DeskReply:
        handler = self._COMMANDS.get(command.action)
        if handler is None:
            raise InvalidInput(f"unknown desk action {command.action!r}")
        try:
            reply = await handler(self, command)
        except AmiActionError as exc:
            reason = exc.reply.get("Message") or "no reason given"
            log.info("desk_action_refused", action=command.action, login=command.login,
                     ami_action=exc.action, reason=reason)
            return DeskReply(False, f"Asterisk refused {exc.action}: {reason}",
                             AsteriskRefused.error_id)
        except AmiError as exc:
            log.warning("desk_action_failed", action=command.action, login=command.login,
                        error=str(exc))
            return DeskReply(False, str(exc), exc.error_id)
        log.info("desk_action", action=command.action, login=command.login, ok=reply.ok)
        return reply

    async def _login(self, command: DeskCommand) -> DeskReply:
        if not command.skills:
            return DeskReply(False, "no skills: an administrator gives you queues first",
                             "no_skills")
        done: list[str] = []
        refused: list[str] = []
        for skill in command.skills:
            try:
                await self._ami.action(
                    "QueueAdd", Queue=skill.queue, Interface=command.interface,
                    Penalty=str(skill.penalty), MemberName=command.member_name or command.login,
                    StateInterface=command.interface, Paused="false")
                done.append(skill.queue)
            except AmiActionError as exc:
                message = exc.reply.get("Message") or "refused"
                if "already there" in message.lower():
                    done.append(skill.queue)  # the state asked for is the state it is in
                else:
                    refused.append(f"{skill.queue}: {message}")
        if not done:
            return DeskReply(False, "Asterisk refused QueueAdd: " + "; ".join(refused),
                             AsteriskRefused.error_id)
        return DeskReply(True, "logged in to " + ", ".join(done),
                         data={"queues": done, "refused": refused})

    async def _logout(self, command: DeskCommand) -> DeskReply:
        members = await self._members(command.interface)
        queues = [m["queue"] for m in members]
        if not queues:
            return DeskReply(False, f"Asterisk lists {command.interface} in no queue",
                             "not_logged_in")
        for queue in queues:
            await self._ami.action("QueueRemove", Queue=queue, Interface=command.interface)
        self._cancel_wrapup(command.interface)
        return DeskReply(True, "logged out of " + ", ".join(queues), data={"queues": queues})

    async def _pause(self, command: DeskCommand) -> DeskReply:
        if command.reason not in self._config.reason_codes:
            raise InvalidInput(f"reason: one of {', '.join(self._config.reason_codes)}")
        self._cancel_wrapup(command.interface)
        await self._ami.action("QueuePause", Interface=command.interface, Paused="true",
                               Reason=command.reason)
        return DeskReply(True, f"paused: {command.reason}")

    async def _ready(self, command: DeskCommand) -> DeskReply:
        self._cancel_wrapup(command.interface)
        await self._ami.action("QueuePause", Interface=command.interface, Paused="false")
        return DeskReply(True, "ready")

    async def _status(self, command: DeskCommand) -> DeskReply:
        return DeskReply(True, "", data={"members": await self._members(command.interface)})

    async def _members(self, interface: str) -> list[dict[str, Any]]:
        items = await self._ami.action_list("QueueStatus", Member=interface)
        return [member_view(dict(item.headers)) for item in items
                if item.event == "QueueMember"
                and (item.get("Location") or item.get("Interface")) == interface]

    def _call_of(self, command: DeskCommand) -> _Call:
        call = self._calls.get(command.interface)
        if call is None:
            raise AsteriskRefused("there is no queue call on your phone now")
        return call

    async def _hangup(self, command: DeskCommand) -> DeskReply:
        """The operator's leg, as if they put the phone down: the caller goes on in the
        dialplan (Queue option c: the survey)."""
        call = self._call_of(command)
        await self._ami.action("Hangup", Channel=call.member_channel or call.caller_channel)
        # Asterisk's AgentComplete may come only when the caller's part ends (after a
        # transfer, the survey): the card ends now.
        self._finish(command.interface, "hung up")
        return DeskReply(True, "hung up", data={"uniqueid": call.uniqueid})

    async def _transfer_queue(self, command: DeskCommand) -> DeskReply:
        if self._queues and command.queue not in self._queues:
            raise InvalidInput(f"queue: one of {', '.join(self._queues)}")
        call = self._call_of(command)
        d = self._dialplan
        await self._ami.action("Setvar", Channel=call.caller_channel, Variable="HOTLINE_QUEUE",
                               Value=command.queue)
        await self._ami.action("Redirect", Channel=call.caller_channel, Context=d.queue_context,
                               Exten=d.queue_exten, Priority=d.queue_priority)
        self._finish(command.interface, "transferred")
        return DeskReply(True, f"transferred to queue {command.queue}",
                         data={"uniqueid": call.uniqueid})

    async def _transfer_operator(self, command: DeskCommand) -> DeskReply:
        if not command.target_interface:
            raise InvalidInput("target: the operator to transfer to")
        call = self._call_of(command)
        d = self._dialplan
        await self._ami.action("Setvar", Channel=call.caller_channel, Variable="DESK_TARGET",
                               Value=command.target_interface)
        await self._ami.action("Redirect", Channel=call.caller_channel,
                               Context=d.transfer_context, Exten=d.transfer_exten, Priority="1")
        self._finish(command.interface, "transferred")
        return DeskReply(True, "transferred", data={"uniqueid": call.uniqueid})

    async def _callback(self, command: DeskCommand) -> DeskReply:
        if not is_dialable(command.number):
            raise InvalidInput("number: digits, with an optional leading +")
        channel_id = f"desk-{secrets.token_hex(8)}"
        self._originates[channel_id] = command.login
        if len(self._originates) > 1000:  # answers that never came
            self._originates.pop(next(iter(self._originates)))
        d = self._dialplan
        try:
            await self._ami.action(
                "Originate", Channel=command.interface, Context=d.callback_context,
                Exten=command.number, Priority="1", CallerID=d.callback_caller_id,
                Timeout="30000", Async="true", ChannelId=channel_id)
        except AmiError:
            self._originates.pop(channel_id, None)
            raise
        log.info("desk_callback", login=command.login, number=mask_phone(command.number))
        return DeskReply(True, "calling your phone first, then the citizen",
                         data={"channel_id": channel_id})

    _COMMANDS: ClassVar[dict[str, Callable[[DeskController, DeskCommand],
                                           Awaitable[DeskReply]]]] = {
        LOGIN: _login, LOGOUT: _logout, PAUSE: _pause, READY: _ready, STATUS: _status,
        HANGUP: _hangup, TRANSFER_QUEUE: _transfer_queue,
        TRANSFER_OPERATOR: _transfer_operator, CALLBACK: _callback,
    }

    # --- the screen-pop ------------------------------------------------------------------

    def _chain(self, interface: str, step: Callable[[], Awaitable[None]]) -> None:
        """Run ``step`` after the previous step of this member, in a task of its own."""
        previous = self._chains.get(interface)

        async def run() -> None:
            if previous is not None and not previous.done():
                with contextlib.suppress(Exception):
                    await asyncio.shield(previous)
            try:
                await step()
            except (OSError, aioredis.RedisError) as exc:
                log.warning("desk_publish_failed", interface=interface,
                            error=f"{type(exc).__name__}: {exc}")

        task = asyncio.create_task(run(), name=f"desk-pop-{interface}")
        self._chains[interface] = task
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            if self._chains.get(interface) is t:
                del self._chains[interface]

        task.add_done_callback(done)

    def _event_time(self, msg: AmiMessage) -> float:
        try:
            return float(msg.get("Timestamp") or "")
        except ValueError:
            return self._clock()

    def _on_agent_called(self, msg: AmiMessage) -> None:
        interface = msg.get("Interface") or ""
        uniqueid = msg.get("Uniqueid") or ""
        if not interface or not uniqueid:
            return
        rang_at = self._event_time(msg)
        pop = self._base_pop(msg, uniqueid, rang_at)
        self._pops[interface] = pop
        self._calls.pop(interface, None)

        async def step() -> None:
            login = await self._directory.login_of_interface(interface)
            if login is None:
                self._pops.pop(interface, None)  # a member without an account: no desk
                return
            pop["login"] = login
            number = pop["caller_number"]
            try:
                context = await asyncio.wait_for(self._context.caller_context(number),
                                                 CONTEXT_TIMEOUT_SECONDS)
            except Exception as exc:  # the call still pops, without its history
                log.warning("desk_context_failed", uniqueid=uniqueid,
                            error=f"{type(exc).__name__}: {exc}")
                context = {"citizen": None, "appeals": [], "recent_calls": [],
                           "context_error": "the case store did not answer in time"}
            pop.update(context)
            if self._pops.get(interface) is not pop:
                return  # withdrawn or replaced while the case store answered
            await self._publish_pop(login, pop)
            log.info("screen_pop", login=login, uniqueid=uniqueid, queue=pop["queue"],
                     caller=mask_phone(number), citizen_known=pop["citizen"] is not None)

        self._chain(interface, step)

    def _base_pop(self, msg: AmiMessage, uniqueid: str, rang_at: float) -> dict[str, Any]:
        record = self._tracker.call(uniqueid)
        queue = msg.get("Queue") or ""
        entered = None
        path: list[str] = []
        if record is not None:
            path = [a.queue for a in record.attempts]
            if record.attempts:
                entered = record.attempts[0].entered_at.timestamp()
        info = self._queues.get(queue, {})
        return {
            "type": "pop", "state": "ringing", "version": time.time_ns(),
            "uniqueid": uniqueid,
            "call_key": record.call_key if record is not None else None,
            "queue": queue, "queue_label": info.get("label", queue),
            "sphere": info.get("sphere"), "queue_path": path,
            "caller_number": msg.get("CallerIDNum") or "",
            "caller_name": msg.get("CallerIDName") or "",
            # the channel's language now (the dialplan sets it after the channel is made)
            "language": msg.get("Language") or (record.language if record is not None else ""),
            "ivr_choice": record.ivr_choice if record is not None else None,
            "ivr_source": record.ivr_source if record is not None else None,
            "waited_seconds": round(rang_at - entered) if entered is not None else None,
            "rang_at": rang_at, "answered_at": None, "ended_at": None,
            "citizen": None, "appeals": [], "recent_calls": [], "notices": [],
        }

    async def _publish_pop(self, login: str, pop: dict[str, Any], ttl: int = POP_TTL_SECONDS,
                           ) -> None:
        pop["version"] = time.time_ns()
        text = json.dumps(pop, ensure_ascii=False, default=str)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(pop_key(login), text, ex=ttl)
            pipe.publish(operator_channel(login), text)
            await pipe.execute()

    async def _end_pop(self, interface: str, pop: dict[str, Any], state: str, why: str) -> None:
        login = pop.get("login")
        if login is None:
            return
        pop.update(state=state, ended_at=self._clock(), end_reason=why)
        if state == "ended":  # the card stays through wrap-up (the disposition needs it)
            await self._publish_pop(login, pop, ENDED_POP_TTL_SECONDS)
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.delete(pop_key(login))
            pipe.publish(operator_channel(login), json.dumps(
                {"type": "pop_end", "uniqueid": pop["uniqueid"], "reason": why,
                 "version": time.time_ns()}))
            await pipe.execute()

    def _on_agent_connect(self, msg: AmiMessage) -> None:
        interface = msg.get("Interface") or ""
        pop = self._pops.get(interface)
        uniqueid = msg.get("Uniqueid") or ""
        self._calls[interface] = _Call(uniqueid, msg.get("Channel") or "",
                                       msg.get("DestChannel") or "")
        # Answered here: whoever else it rang (ringall) is not told by Asterisk. Note
        # QueueCallerLeave comes BEFORE AgentConnect: it is no sign of a lost call.
        # A call transferred here ends the card of the operator who had it (Asterisk
        # may tell them only when the whole call ends).
        for other, other_pop in list(self._pops.items()):
            if other != interface and other_pop["uniqueid"] == uniqueid:
                if other_pop["state"] == "ringing":
                    self._withdraw(other, uniqueid, "answered by another operator")
                else:
                    self._finish(other, "transferred")
        if pop is None or pop["uniqueid"] != uniqueid:
            return
        answered_at = self._event_time(msg)

        async def step() -> None:
            login = pop.get("login")
            if login is None or self._pops.get(interface) is not pop:
                return
            pop.update(state="in_call", answered_at=answered_at)
            await self._publish_pop(login, pop)

        self._chain(interface, step)

    def _on_agent_complete(self, msg: AmiMessage) -> None:
        """The member's call is over. Asterisk leaves Uniqueid empty when the caller's
        channel is already gone (the caller, or our Hangup, ended it): then it is the
        member's current call."""
        interface = msg.get("Interface") or ""
        uniqueid = msg.get("Uniqueid") or ""
        owed = self._owed.pop(interface, None)
        if owed is not None and uniqueid in ("", owed):
            # the end of a call this member transferred away: already ended and wrapped up
            log.info("desk_call_completed", interface=interface, uniqueid=owed,
                     transferred=True)
            return
        call = self._calls.get(interface)
        if call is not None and uniqueid in ("", call.uniqueid):
            del self._calls[interface]
        pop = self._pops.get(interface)
        mine = pop is not None and pop["state"] != "ringing" and uniqueid in ("", pop["uniqueid"])
        log.info("desk_call_completed", interface=interface, uniqueid=uniqueid or None,
                 card=mine, reason=msg.get("Reason"))
        if pop is not None and mine:
            del self._pops[interface]
            self._chain(interface, lambda: self._end_pop(
                interface, pop, "ended", msg.get("Reason") or "completed"))
        self._wrap_up(interface)

    def _wrap_up(self, interface: str) -> None:
        if self._config.wrapup_seconds > 0:
            self._chain(interface, lambda: self._start_wrapup(interface))

    def _finish(self, interface: str, why: str) -> None:
        """The call left this operator (transferred, or they hung up): its card ends,
        the call control acts on it no more, wrap-up starts; Asterisk's AgentComplete
        for it may come only when the whole call ends, and is then owed, not news."""
        call = self._calls.pop(interface, None)
        pop = self._pops.pop(interface, None)
        uniqueid = pop["uniqueid"] if pop is not None else call.uniqueid if call else None
        if uniqueid is None:
            return
        self._owed[interface] = uniqueid
        if pop is not None:
            self._chain(interface, lambda: self._end_pop(interface, pop, "ended", why))
        self._wrap_up(interface)

    def _on_ring_no_answer(self, msg: AmiMessage) -> None:
        self._withdraw(msg.get("Interface") or "", msg.get("Uniqueid") or "", "not answered")

    def _on_caller_gone(self, msg: AmiMessage) -> None:
        uniqueid = msg.get("Uniqueid") or ""
        for interface, pop in list(self._pops.items()):
            if pop["uniqueid"] == uniqueid and pop["state"] == "ringing":
                self._withdraw(interface, uniqueid, "the caller hung up")

    def _withdraw(self, interface: str, uniqueid: str, why: str) -> None:
        pop = self._pops.get(interface)
        if pop is None or pop["uniqueid"] != uniqueid:
            return
        del self._pops[interface]
        self._chain(interface, lambda: self._end_pop(interface, pop, "withdrawn", why))

    # --- member states and wrap-up -----------------------------------------------------------

    def _on_member_event(self, msg: AmiMessage) -> None:
        interface = msg.get("Interface") or ""
        if not interface:
            return
        view = member_view(dict(msg.headers))
        if msg.event == "QueueMemberRemoved":
            view["status"] = "logged_out"
        if view["paused"]:
            self._paused_reason[interface] = view["reason"]
        else:
            self._paused_reason.pop(interface, None)

        async def step() -> None:
            login = await self._directory.login_of_interface(interface)
            if login is None:
                return
            await self._redis.publish(operator_channel(login), json.dumps(
                {"type": "presence", "event": msg.event, "member": view,
                 "version": time.time_ns()}, ensure_ascii=False))

        self._chain(interface, step)

    async def _start_wrapup(self, interface: str) -> None:
        if await self._directory.login_of_interface(interface) is None:
            return  # simulated members without an account keep Asterisk's own rhythm
        reason = self._config.wrapup_reason
        try:
            await self._ami.action("QueuePause", Interface=interface, Paused="true",
                                   Reason=reason)
        except AmiError as exc:  # logged out meanwhile, link down: no wrap-up to end
            log.info("desk_wrapup_not_started", interface=interface, error=str(exc))
            return
        self._paused_reason[interface] = reason
        self._cancel_wrapup(interface)
        task = asyncio.create_task(self._end_wrapup(interface, reason),
                                   name=f"desk-wrapup-{interface}")
        self._wrapups[interface] = task
        task.add_done_callback(
            lambda t: self._wrapups.pop(interface) if self._wrapups.get(interface) is t else None)

    async def _end_wrapup(self, interface: str, reason: str) -> None:
        await asyncio.sleep(self._config.wrapup_seconds)
        if self._paused_reason.get(interface) != reason:
            return  # the operator chose otherwise meanwhile (a pause of their own, ready)
        try:
            await self._ami.action("QueuePause", Interface=interface, Paused="false")
        except AmiError as exc:
            log.warning("desk_wrapup_end_failed", interface=interface, error=str(exc))

    def _cancel_wrapup(self, interface: str) -> None:
        task = self._wrapups.pop(interface, None)
        if task is not None:
            task.cancel()

    # --- results of asynchronous actions ------------------------------------------------------

    async def _on_originate_response(self, msg: AmiMessage) -> None:
        login = self._originates.pop(msg.get("Uniqueid") or "", None)
        if login is None:
            return
        ok = (msg.get("Response") or "").lower() == "success"
        reason = ORIGINATE_REASONS.get(msg.get("Reason") or "", msg.get("Reason") or "")
        try:
            await self._redis.publish(operator_channel(login), json.dumps(
                {"type": "result", "action": CALLBACK, "ok": ok,
                 "message": "the call back went through" if ok else f"call back failed: {reason}",
                 "version": time.time_ns()}, ensure_ascii=False))
        except (OSError, aioredis.RedisError) as exc:
            log.warning("desk_publish_failed", login=login, error=str(exc))
