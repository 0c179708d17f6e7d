#!/usr/bin/env -S PYTHONPATH=/opt/hotline-pyst2 python3
"""Classic-AGI fallback menu, run by Asterisk when the FastAGI server is unreachable.

Dialplan: ``AGI(agi://…/ivr)`` gives AGISTATUS=FAILURE →
``AGI(hotline-fallback.py,<config dir>)`` → ``Queue(${HOTLINE_QUEUE})``
(preset to the menu's default queue). It runs inside Asterisk's filesystem
under that python3 with the standard library and pyst2 only, so it must not
import this project's packages.

The menu is read from the config directory given as the argument:
``ivr.toml`` (prompt, timeout, default queue) and ``queues.toml`` (the digit of
each queue), the same files the FastAGI menu follows. It asks for one digit (at
most twice) and sets HOTLINE_QUEUE, IVR_CHOICE and IVR_SOURCE=fallback.

Whatever goes wrong, it exits 0 without a traceback so the dialplan goes on.
When the files cannot be read it asks nothing and leaves HOTLINE_QUEUE as the
dialplan preset it (the default queue, generated from the same files): a menu
written into this script would be one more copy of the queue names to drift.
"""

from __future__ import annotations

import io
import os
import sys
import tomllib
from dataclasses import dataclass, field
from typing import Any, Protocol

DEFAULT_CONFIG_DIR = "/etc/hotline"
SOURCE = "fallback"
MAX_ATTEMPTS = 2  # a fallback keeps it short: the caller reaches a person sooner


@dataclass(frozen=True)
class Menu:
    prompt: str = ""
    invalid_prompt: str = ""
    timeout_ms: int = 5000
    attempts: int = MAX_ATTEMPTS
    default_queue: str = ""  # "": HOTLINE_QUEUE stays as the dialplan preset it
    options: dict[str, str] = field(default_factory=dict)  # digit -> queue


#: No menu at all: the caller goes to the dialplan's preset queue at once.
NO_MENU = Menu()


class AgiLike(Protocol):
    """The part of pyst2's ``asterisk.agi.AGI`` used here."""

    def answer(self) -> Any: ...
    def get_data(self, filename: str, timeout: int = ..., max_digits: int = ...) -> str: ...
    def stream_file(
        self, filename: str, escape_digits: str = ..., sample_offset: int = ...
    ) -> Any: ...
    def set_variable(self, name: str, value: str) -> Any: ...


def _note(message: str) -> None:
    # stderr only: stdout is the AGI channel to Asterisk.
    print(f"hotline-fallback: {message}", file=sys.stderr)


def _toml(path: str) -> dict[str, Any]:
    with open(path, "rb") as fh:
        return tomllib.load(fh)


def load_menu(config_dir: str) -> Menu:
    """The menu from ``ivr.toml`` and ``queues.toml``; no menu on any problem."""
    try:
        menu = _toml(os.path.join(config_dir, "ivr.toml"))["menu"]
        queues = _toml(os.path.join(config_dir, "queues.toml"))["queues"]
        options = {
            str(entry["digit"]): str(name)
            for name, entry in queues.items()
            if isinstance(entry, dict) and "digit" in entry
        }
        loaded = Menu(
            prompt=str(menu["prompt"]),
            invalid_prompt=str(menu["invalid_prompt"]),
            timeout_ms=int(menu["timeout_ms"]),
            attempts=max(1, min(int(menu["max_attempts"]), MAX_ATTEMPTS)),
            default_queue=str(menu["default_queue"]),
            options=options,
        )
        if not options or not loaded.default_queue:
            raise ValueError("no digits or no default queue")
        return loaded
    except Exception as exc:  # a broken file must not cost the caller a person
        _note(f"no menu, the preset queue takes the call ({type(exc).__name__}: {exc})")
        return NO_MENU


def run(agi: AgiLike, menu: Menu) -> None:
    """Ask for a digit and set the channel variables. Exceptions propagate."""
    agi.answer()
    choice = ""
    queue = menu.default_queue
    attempts = menu.attempts if menu.options else 0  # no menu: nothing to ask
    for attempt in range(1, attempts + 1):
        digits = agi.get_data(menu.prompt, menu.timeout_ms, 1)
        if digits in menu.options:
            choice, queue = digits, menu.options[digits]
            break
        if attempt < menu.attempts:
            agi.stream_file(menu.invalid_prompt)
    if queue:
        agi.set_variable("HOTLINE_QUEUE", queue)
    agi.set_variable("IVR_CHOICE", choice)
    agi.set_variable("IVR_SOURCE", SOURCE)


def main(argv: list[str]) -> int:
    menu = load_menu(argv[1] if len(argv) > 1 else DEFAULT_CONFIG_DIR)
    try:
        from asterisk.agi import AGI  # pyst2; imported here so tests can load this module

        if isinstance(sys.stdin, io.TextIOWrapper):
            # A caller name in another encoding must not end the menu early.
            sys.stdin.reconfigure(encoding="utf-8", errors="replace")
        # pyst2 echoes the environment (caller numbers included) to stderr: mute it.
        with open(os.devnull, "w") as devnull:
            run(AGI(stderr=devnull), menu)
    except Exception as exc:  # pyst2: ValueError on HANGUP, AGIUnknownError on 511, AGIHangup…
        _note(f"ended early: {type(exc).__name__}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
