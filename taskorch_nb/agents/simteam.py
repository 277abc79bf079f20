"""The simulated provider's team: answers for each archetype, so any task runs offline.

For any task the team writes a plan, a spec, a small real module and its tests
(QC runs them for real). The demo task "Add user authentication" is richer: a
real password-hashing user store whose first build fails one test (usernames
are not normalised), which the fix round corrects.
"""

from __future__ import annotations

import json
import re
import textwrap
from typing import Any

from taskorch_nb.llm.base import ToolCall
from taskorch_nb.llm.simulated import SimReply, SimRequest, default_reply

DEMO_TASK = "Add user authentication"


def _slug(task: str) -> str:
    words = re.findall(r"[a-z0-9]+", task.lower())
    words = [w for w in words if w not in {"add", "a", "an", "the", "to", "for", "of", "and"}]
    slug = "_".join(words[:4]) or "feature"
    return slug if slug[0].isalpha() else f"m_{slug}"


def _task_of(request: SimRequest) -> str:
    for message in request.messages:
        if message.get("role") == "user":
            match = re.search(r"Task: (.*)", str(message.get("content", "")))
            if match:
                return match.group(1).strip()
    return "feature"


def _is_demo(task: str) -> bool:
    return "authentication" in task.lower() or task.lower().startswith("add user auth")


def _acted(request: SimRequest) -> bool:
    """Has this agent already called a tool since its instruction?"""
    return any(m.get("role") == "tool" for m in request.messages)


def _instruction(request: SimRequest) -> str:
    users = [m for m in request.messages if m.get("role") == "user"]
    return str(users[0].get("content", "")) if users else ""


def _call(name: str, arguments: dict[str, Any], n: int) -> SimReply:
    return SimReply(tool_calls=[ToolCall(id=f"call_{n}", name=name, arguments=arguments)])


# -- the files the Builder writes ---------------------------------------------

AUTH_TESTS = textwrap.dedent('''
    import pytest

    from auth import AuthError, UserStore


    def test_register_and_authenticate():
        store = UserStore()
        store.register("alice", "correct horse battery")
        assert store.authenticate("alice", "correct horse battery")


    def test_wrong_password_is_refused():
        store = UserStore()
        store.register("alice", "correct horse battery")
        assert not store.authenticate("alice", "wrong password!")


    def test_passwords_are_salted_and_never_stored_plain():
        store = UserStore()
        store.register("alice", "same password 1")
        store.register("bob", "same password 1")
        hashes = [store.stored_hash("alice"), store.stored_hash("bob")]
        assert hashes[0] != hashes[1]
        assert all("same password" not in h for h in hashes)


    def test_short_password_is_rejected():
        with pytest.raises(AuthError):
            UserStore().register("carol", "short")


    def test_duplicate_user_is_rejected():
        store = UserStore()
        store.register("dave", "long enough password")
        with pytest.raises(AuthError):
            store.register("dave", "another long password")


    def test_login_is_case_insensitive_for_usernames():
        store = UserStore()
        store.register("Erin", "long enough password")
        assert store.authenticate("erin", "long enough password")


    def test_sessions_are_issued_and_verified():
        store = UserStore()
        store.register("frank", "long enough password")
        token = store.login("frank", "long enough password")
        assert store.user_for(token) == "frank"
        assert store.user_for("forged-token") is None
''').lstrip()

_AUTH_CODE = '''
"""User authentication: salted PBKDF2 password hashes and session tokens."""

import hashlib
import hmac
import secrets

ITERATIONS = 20_000
MIN_PASSWORD = 8


class AuthError(Exception):
    """Registration or login refused."""


class UserStore:
    def __init__(self):
        self._users = {}
        self._sessions = {}

    @staticmethod
    def _key(username):
        return {normalise}

    @staticmethod
    def _hash(password, salt):
        digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, ITERATIONS)
        return digest.hex()

    def register(self, username, password):
        key = self._key(username)
        if not key:
            raise AuthError("username is empty")
        if len(password) < MIN_PASSWORD:
            raise AuthError(f"password must have at least {MIN_PASSWORD} characters")
        if key in self._users:
            raise AuthError(f"user {key!r} exists")
        salt = secrets.token_bytes(16)
        self._users[key] = (salt, self._hash(password, salt))

    def stored_hash(self, username):
        return self._users[self._key(username)][1]

    def authenticate(self, username, password):
        record = self._users.get(self._key(username))
        if record is None:
            return False
        salt, expected = record
        return hmac.compare_digest(expected, self._hash(password, salt))

    def login(self, username, password):
        if not self.authenticate(username, password):
            raise AuthError("invalid credentials")
        token = secrets.token_urlsafe(32)
        self._sessions[token] = self._key(username)
        return token

    def user_for(self, token):
        return self._sessions.get(token)
'''.lstrip()

AUTH_CODE_FIRST = _AUTH_CODE.replace("{normalise}", "username.strip()")
AUTH_CODE_FIXED = _AUTH_CODE.replace("{normalise}", "username.strip().lower()")


def generic_tests(module: str, task: str) -> str:
    return textwrap.dedent(f'''
        from {module} import TASK, plan, summary


        def test_plan_has_ordered_steps():
            steps = plan()
            assert len(steps) >= 3
            assert steps[0].startswith("1.")


        def test_summary_names_the_task():
            assert TASK in summary()
            assert str(len(plan())) in summary()
    ''').lstrip().replace("{task}", task)


def generic_code(task: str) -> str:
    steps = ["understand the requirement", "write the tests first", "implement the change",
             "validate with QC"]
    return textwrap.dedent(f'''
        """{task}: the plan the simulated team implemented offline."""

        TASK = {task!r}
        STEPS = {steps!r}


        def plan():
            return [f"{{i}}. {{step}}" for i, step in enumerate(STEPS, 1)]


        def summary():
            return f"{{TASK}}: {{len(STEPS)}} steps"
    ''').lstrip()


# -- the archetypes' answers ------------------------------------------------------

def _spec(task: str) -> dict[str, Any]:
    if _is_demo(task):
        return {
            "summary": "A user store with salted PBKDF2 password hashes and session tokens.",
            "module": "auth.py",
            "test_file": "tests/test_auth.py",
            "files": [{"path": "auth.py", "purpose": "UserStore, AuthError"},
                      {"path": "tests/test_auth.py", "purpose": "the test plan as pytest"}],
            "decisions": ["PBKDF2-HMAC-SHA256 from the standard library (no new dependency)",
                          "per-user random salt", "constant-time comparison",
                          "usernames are case-insensitive"],
            "test_plan": [
                {"name": name, "description": name.replace("_", " ")}
                for name in re.findall(r"def (test_\w+)", AUTH_TESTS)
            ],
        }
    module = _slug(task)
    return {
        "summary": f"A small module `{module}` that captures the plan for: {task}.",
        "module": f"{module}.py",
        "test_file": f"tests/test_{module}.py",
        "files": [{"path": f"{module}.py", "purpose": "plan() and summary()"}],
        "decisions": ["keep it dependency-free"],
        "test_plan": [{"name": "test_plan_has_ordered_steps", "description": "numbered steps"},
                      {"name": "test_summary_names_the_task", "description": "summary"}],
    }


def _builder(request: SimRequest, task: str) -> SimReply | dict[str, Any]:
    instruction = _instruction(request)
    spec = _spec(task)
    red = "RED step" in instruction
    path = spec["test_file"] if red else spec["module"]
    if not _acted(request):
        if _is_demo(task):
            content = AUTH_TESTS if red else (
                AUTH_CODE_FIXED if "QC found issues" in instruction else AUTH_CODE_FIRST
            )
        else:
            module = spec["module"].removesuffix(".py")
            content = generic_tests(module, task) if red else generic_code(task)
        return _call("write_file", {"path": path, "content": content}, request.call_index)
    return {"files_written": [path], "notes": "tests first (RED)" if red else "code (GREEN)"}


def team_responder(request: SimRequest) -> SimReply | dict[str, Any]:
    """Answer as the archetype that asks (`request.agent`); others get the default reply."""
    task = _task_of(request)
    agent = request.agent
    if agent == "researcher":
        offered = {t["name"] for t in request.tools or []}
        if not _acted(request) and "list_files" in offered:
            return _call("list_files", {"path": "."}, request.call_index)
        listing = [m.get("content", "") for m in request.messages if m.get("role") == "tool"]
        return {
            "summary": f"Context for '{task}': the workspace was surveyed.",
            "findings": [f"workspace listing: {json.dumps(listing)[:200]}"],
            "relevant_files": [],
        }
    if agent == "architect":
        return _spec(task)
    if agent == "builder":
        return _builder(request, task)
    return default_reply(request)
