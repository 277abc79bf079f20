"""Screening corrective prompts pushed to the hub for prompt-injection tells.

A corrective prompt from another project is data that will be pasted into a
model's context, so it must not be an instruction channel. The screen is a
tripwire, not a proof: it flags what looks like an attempt to steer the model
(override instructions, leak secrets, fetch URLs, run code, smuggle encoded
payloads); the hub quarantines a flagged prompt until a person approves it or
enough distinct projects push the very same text.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# Zero-width and bidi-control characters hide text from a human reviewer.
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

_SECRET = (
    r"(secrets?|(api[\s_-]*)?keys?|tokens?|passwords?|passwd|credentials?|"
    r"env(ironment)?(\s+variables?)?|private\s+keys?|ssh\s+keys?|\.env)"
)

#: (reason, pattern) pairs, matched against the NFKC-normalised, casefolded text.
RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (reason, re.compile(pattern, re.IGNORECASE))
    for reason, pattern in (
        ("override: ignore previous instructions",
         r"\b(ignore|forget|override|bypass|skip)\b.{0,40}\b(previous|prior|above|earlier|"
         r"preceding|all|any|your|system|original)\b.{0,40}\b(instructions?|rules?|prompts?|"
         r"directions?|guidelines?|messages?|context|constraints?)\b"),
        ("override: disregard", r"\bdisregard\b"),
        ("override: new instructions", r"\b(new|updated|real|actual)\s+instructions?\b"),
        ("override: role change",
         r"\byou\s+are\s+now\b|\bact\s+as\s+(an?\s+)?(admin|root|developer|dan)\b|"
         r"\bjailbreak\b|\bdeveloper\s+mode\b|\bdo\s+anything\s+now\b"),
        ("system prompt", r"\bsystem\s*(prompt|message|instructions?)\b|<\s*/?\s*system\s*>|"
         r"\[/?(inst|system)\]|<\|im_(start|end)\|>"),
        ("secret exfiltration",
         rf"\b(reveal|print|show|output|display|leak|dump|send|share|exfiltrate|echo|list|"
         rf"return|expose|tell\s+me|give\s+me|post|upload|cat)\b.{{0,40}}\b{_SECRET}"),
        ("secret reference", r"\b(aws_secret|secret_key|access_key|api_key|bearer\s+[a-z0-9])"),
        ("url", r"\b(https?|ftp|file|data|javascript)\s*:|\bwww\.|\b[a-z0-9-]+\.(com|net|org|"
         r"io|ru|cn|xyz|top|sh|ly|me|dev|app)\b(/|\s|$)"),
        ("code fence", r"```|~~~"),
        ("shell command",
         r"\b(curl|wget|nc|ncat|netcat|ssh|scp|bash|sh|zsh|powershell|pwsh|chmod|chown|sudo|"
         r"eval|exec)\b\s+[-/\w$'\"]|\brm\s+-[a-z]*[rf]|\|\s*(ba)?sh\b|\$\([^)]*\)|"
         r"\b(mkfifo|crontab|base64\s+-d)\b|>\s*/(dev|etc|tmp)/"),
        ("code", r"\bimport\s+(os|sys|subprocess|socket|shutil|requests|urllib|httpx)\b|"
         r"\bfrom\s+(os|subprocess|socket)\s+import\b|__import__|\b(os\.(system|popen|environ)|"
         r"subprocess\.|eval\s*\(|exec\s*\(|compile\s*\(|getattr\s*\()"),
        ("markup", r"<\s*(script|iframe|img|object|embed|svg|a\s)\b|\bon(error|load)\s*="),
        ("encoded blob", r"[a-z0-9+/]{40,}={0,2}|(\\x[0-9a-f]{2}){8,}|(%[0-9a-f]{2}){8,}"),
    )
)


@dataclass(frozen=True, slots=True)
class ScreenResult:
    """The screen's verdict: `suspicious` when any rule matched; `reasons` name them."""

    suspicious: bool
    reasons: tuple[str, ...]


def normalise(text: str) -> str:
    """NFKC, casefolded, invisible characters dropped, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text)
    text = _INVISIBLE.sub("", text)
    return " ".join(text.casefold().split())


def screen_prompt(text: str) -> ScreenResult:
    """Flag a corrective prompt that reads like an instruction channel rather than advice."""
    reasons: list[str] = []
    if _INVISIBLE.search(text):
        reasons.append("invisible characters")
    if _CONTROL.search(text):
        reasons.append("control characters")
    flat = normalise(text)
    # Also read it with separators removed, so "i.g.n.o.r.e" tricks do not pass.
    squeezed = re.sub(r"[^a-z0-9 ]+", "", flat)
    for reason, pattern in RULES:
        if pattern.search(flat) or (reason.startswith("override") and pattern.search(squeezed)):
            reasons.append(reason)
    return ScreenResult(suspicious=bool(reasons), reasons=tuple(reasons))
