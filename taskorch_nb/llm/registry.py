"""Providers by name: `make_provider("simulated" | "openai" | "anthropic" | "auto")`.

"auto" picks openai when `OPENAI_BASE_URL` (a local or compatible server) or
`OPENAI_API_KEY` is set, then anthropic with `ANTHROPIC_API_KEY`, and falls back to
the simulated one, so a notebook works offline and uses a real model once one is
configured. The choice and its reason are logged once and kept as `chosen_because`.
`is_local(base_url)` tells a self-hosted server (loopback or private address), whose
models cost nothing unless priced.
"""

from __future__ import annotations

import inspect
import ipaddress
import logging
import os
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from taskorch_nb.core.clock import Clock
from taskorch_nb.errors import ConfigurationError
from taskorch_nb.llm.base import Provider

logger = logging.getLogger("taskorch_nb.llm")

KNOWN = ("simulated", "openai", "anthropic", "auto")

#: (choice, reason) pairs already logged, so repeated `make_provider("auto")` stays quiet.
_announced: set[tuple[str, str]] = set()


def _provider_class(name: str) -> Callable[..., Any]:
    # Imported here: the HTTP providers pull in httpx (~0.3 s), only when asked for.
    if name == "simulated":
        from taskorch_nb.llm.simulated import SimulatedProvider

        return SimulatedProvider
    if name == "openai":
        from taskorch_nb.llm.openai import OpenAIProvider

        return OpenAIProvider
    from taskorch_nb.llm.anthropic import AnthropicProvider

    return AnthropicProvider


def choose_auto() -> tuple[str, str]:
    """The provider "auto" means right now, and why."""
    if os.environ.get("OPENAI_BASE_URL"):
        return "openai", f"OPENAI_BASE_URL is set ({os.environ['OPENAI_BASE_URL']})"
    if os.environ.get("OPENAI_API_KEY"):
        return "openai", "OPENAI_API_KEY is set"
    if os.environ.get("ANTHROPIC_API_KEY"):
        return "anthropic", "ANTHROPIC_API_KEY is set (OPENAI_API_KEY is not)"
    return ("simulated",
            "none of OPENAI_BASE_URL, OPENAI_API_KEY, ANTHROPIC_API_KEY is set")


def is_local(base_url: str | None) -> bool:
    """Whether `base_url` names this machine or a private network (a self-hosted model)."""
    if not base_url:
        return False
    host = (urlsplit(base_url).hostname or "").lower()
    if host in ("localhost", "host.docker.internal") or host.endswith((".local", ".localhost")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local


def make_provider(name: str, *, clock: Clock | None = None, **options: Any) -> Provider:
    """Build a provider by name; `options` go to its constructor (`seed=`, `base_url=`, ...).

    Unknown names and options unknown to the chosen provider raise
    `ConfigurationError`.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in KNOWN:
        raise ConfigurationError(
            f"unknown provider {name!r}; known providers: {', '.join(KNOWN)}"
        )
    if key == "auto":
        key, reason = choose_auto()
        if (key, reason) not in _announced:
            _announced.add((key, reason))
            logger.info("provider 'auto' chose %r because %s", key, reason)
        because = f"auto: {reason}"
    else:
        because = f"requested by name {key!r}"
    cls = _provider_class(key)
    accepted = set(inspect.signature(cls).parameters)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ConfigurationError(
            f"provider {key!r} takes no option(s) {', '.join(unknown)}; "
            f"it takes: {', '.join(sorted(accepted - {'clock'}))}"
        )
    provider = cls(clock=clock, **options)
    provider.chosen_because = because
    return provider
