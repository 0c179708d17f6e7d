"""The service's AMI account has exactly the write classes the actions it sends need.

The actions are read from the source of ``cti_bridge`` (every ``.action("X")``,
``.action_list("X")``, ``._request(…, "X", …)``), so an action added without its
class here and in ``asterisk/etc/manager.conf`` fails this test.
"""

from __future__ import annotations

import ast
import configparser
from pathlib import Path

from tests.support.paths import REPO_ROOT as PROJECT_ROOT

MANAGER_CONF = PROJECT_ROOT / "asterisk" / "etc" / "manager.conf"
SENDERS = ("action", "action_list", "_request")
GENERIC_CLIENT = "ami_client.py"

#: The authority each action is registered with in Asterisk 22's source
#: (``ast_manager_register_xml[_core](name, authority, …)`` in main/manager.c and
#: apps/app_queue.c). manager.c's process_message() runs an action when the
#: account's write classes include ANY of these; an empty set means no class
#: (Challenge/Login come before any account, Ping/QueueStatus/QueueSummary are 0).
REQUIRED: dict[str, frozenset[str]] = {
    "Challenge": frozenset(), "Login": frozenset(), "Ping": frozenset(),
    "QueueSummary": frozenset(), "QueueStatus": frozenset(),
    "CoreStatus": frozenset({"system", "reporting"}),
    "CoreShowChannels": frozenset({"system", "reporting"}),
    "Status": frozenset({"system", "call", "reporting"}),
    "QueueAdd": frozenset({"agent"}),
    "QueueRemove": frozenset({"agent"}),
    "QueuePause": frozenset({"agent"}),
    "Hangup": frozenset({"system", "call"}),
    "Setvar": frozenset({"call"}),
    "Redirect": frozenset({"call"}),
    "BlindTransfer": frozenset({"call"}),
    "Originate": frozenset({"originate"}),
}
#: Never for the service: running programs, CLI commands, reading or changing config.
DANGEROUS = frozenset({"system", "command", "config", "user", "all"})


def actions_sent(root: Path) -> dict[str, list[str]]:
    """Every AMI action name the package sends, with where."""
    found: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in SENDERS):
                continue
            name = next((a.value for a in node.args
                         if isinstance(a, ast.Constant) and isinstance(a.value, str)), None)
            if name is None and path.name == GENERIC_CLIENT:
                continue  # the client's own plumbing passes its caller's name on
            assert name is not None, (
                f"{path}:{node.lineno}: the AMI action's name must be a literal here, so "
                "that this test can check its class")
            found.setdefault(name, []).append(f"{path.relative_to(root.parent)}:{node.lineno}")
    return found


def service_write_classes() -> set[str]:
    parser = configparser.ConfigParser(strict=False, interpolation=None,
                                       inline_comment_prefixes=(";",), comment_prefixes=(";",))
    parser.read_string(MANAGER_CONF.read_text(encoding="utf-8"))
    value = parser["@@AMI_USER@@"]["write"]
    return {c.strip() for c in value.split(",") if c.strip()}


def allowed(classes: set[str], action: str) -> bool:
    need = REQUIRED[action]
    return not need or bool(need & classes)


def test_every_action_sent_has_its_class_known() -> None:
    sent = actions_sent(PROJECT_ROOT / "cti_bridge")
    # the scan sees the desk's actions (a scanner that finds nothing proves nothing)
    assert {"QueueAdd", "QueuePause", "Originate", "Redirect", "CoreStatus"} <= set(sent)
    unknown = {name: where for name, where in sent.items() if name not in REQUIRED}
    assert not unknown, (f"actions sent without a known class {unknown}: find their authority "
                         "in Asterisk's source, add them to REQUIRED and manager.conf")


def test_service_account_has_exactly_the_classes_the_actions_need() -> None:
    sent = set(actions_sent(PROJECT_ROOT / "cti_bridge"))
    classes = service_write_classes()
    assert not classes & DANGEROUS
    missing = sorted(a for a in sent if not allowed(classes, a))
    assert not missing, f"manager.conf's write classes {classes} do not allow {missing}"
    for cls in sorted(classes):
        needed_by = [a for a in sent if allowed(classes, a) and not allowed(classes - {cls}, a)]
        assert needed_by, f"write class {cls!r} is needed by no action we send: remove it"


def test_the_check_fails_without_a_class() -> None:
    """The defence itself: without 'agent' the desk's queue actions are refused."""
    sent = set(actions_sent(PROJECT_ROOT / "cti_bridge"))
    classes = service_write_classes() - {"agent"}
    assert {a for a in sent if not allowed(classes, a)} == {"QueueAdd", "QueueRemove",
                                                             "QueuePause"}
