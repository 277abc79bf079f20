"""Screening corrective prompts pushed to the hub for prompt-injection tells.

A corrective prompt from another project is data that will be pasted into a
model's context, so it must not be an instruction channel. The screen is a
tripwire, not a proof: it flags what looks like an attempt to steer the model
(override instructions, leak secrets, fetch URLs, run code, smuggle encoded
payloads); the hub quarantines a flagged prompt until its admin approves it
(however many projects push the same text). It is the second line only: the
receiving project applies no federated text a person there has not approved.

Disguises are undone before the rules read the text: NFKC, invisible and Unicode
tag characters removed (and the tags' hidden ASCII read too), Cyrillic/Greek
look-alikes folded to Latin (and a word mixing scripts flagged), defanged URLs
(`hxxp://evil[.]com`) refanged, string concatenation (`'ex'+'ec'`) joined.
`clean` is what the hub stores and serves.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# Zero-width, bidi-control and Unicode tag characters hide text from a human reviewer.
_INVISIBLE = re.compile("[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f"
                        "\u200b-\u200f\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f"
                        "\ufeff\uffa0\U000e0000-\U000e007f\U000e0100-\U000e01ef]")
_TAGS = re.compile("[\U000e0020-\U000e007e]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Look-alikes of Latin letters in Cyrillic and Greek (the common homoglyphs).
_CONFUSABLES = str.maketrans(
    "\u0430\u0432\u0435\u0451\u043a\u043c\u043d\u043e\u0440\u0441\u0442\u0443\u0445\u0455"
    "\u0456\u0457\u0458\u0501\u0261\u04bb\u051b\u051d\u0578\u057d\u0131\u03b1\u03b2\u03b5"
    "\u03b9\u03ba\u03bd\u03bf\u03c1\u03c4\u03c5\u03c7\u03b3",
    "abeekmhopctyxsiijdghqwnuiabeikvoptuxy",
)
_WORD = re.compile(r"\w+")

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
        ("override: pay no attention",
         r"\b(pay\s+no\s+(attention|heed|mind)|take\s+no\s+(notice|account)|"
         r"no\s+longer\s+(follow|obey|apply)|(do\s+not|don'?t|stop|never)\s+"
         r"(follow|obey|heed|listen\s+to)(ing)?|set\s+aside|throw\s+away|put\s+aside|"
         r"forget\s+(about\s+)?everything)\b"),
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
        ("defanged url", r"\bh[tx]{2}ps?\s*(:|\[:\])|\[\.\]|\(\.\)|\{\.\}|\[dot\]|\(dot\)"),
        ("sensitive path",
         r"~/|\$home\b|\.ssh\b|authorized_keys|id_(rsa|dsa|ecdsa|ed25519)\b|known_hosts|"
         r"/etc/(passwd|shadow|sudoers|hosts)\b|\.aws/|\.kube/|\.netrc|\.git-credentials|"
         r"\.(bash|zsh)rc\b|\.(bash_)?profile\b|/proc/self"),
        ("code fence", r"```|~~~"),
        ("shell command",
         r"\b(curl|wget|nc|ncat|netcat|ssh|scp|bash|sh|zsh|powershell|pwsh|chmod|chown|sudo|"
         r"eval|exec)\b\s+[-/\w$'\"]|\brm\s+-[a-z]*[rf]|\|\s*(ba)?sh\b|\$\([^)]*\)|"
         r"\b(mkfifo|crontab|base64\s+-d)\b|>\s*/(dev|etc|tmp)/"),
        ("code", r"\bimport\s+(os|sys|subprocess|socket|shutil|requests|urllib|httpx)\b|"
         r"\bfrom\s+(os|subprocess|socket)\s+import\b|__import__|\b(os\.(system|popen|environ)|"
         r"subprocess\.|eval\s*\(|exec\s*\(|compile\s*\(|getattr\s*\()|"
         r"\b__[a-z]+__\b|\[\s*['\"](exec|eval|system|popen|__import__|compile)['\"]\s*\]|"
         r"['\"]\s*\+\s*['\"]"),
        ("markup", r"<\s*(script|iframe|img|object|embed|svg|a\s)\b|\bon(error|load)\s*="),
        ("encoded blob", r"[a-z0-9+/]{40,}={0,2}|(\\x[0-9a-f]{2}){8,}|(%[0-9a-f]{2}){8,}"),
    )
)


@dataclass(frozen=True, slots=True)
class ScreenResult:
    """The screen's verdict: `suspicious` when any rule matched; `reasons` name them."""

    suspicious: bool
    reasons: tuple[str, ...]


def clean(text: str) -> str:
    """What the hub keeps of a text: NFKC, without invisible, tag or control characters,
    whitespace collapsed (case and script kept, so a reviewer reads what was sent)."""
    text = unicodedata.normalize("NFKC", text)
    text = _CONTROL.sub(" ", _INVISIBLE.sub("", text))
    return " ".join(text.split())


def normalise(text: str) -> str:
    """`clean`, casefolded and with look-alike letters folded to Latin: what the rules read."""
    return clean(text).casefold().translate(_CONFUSABLES)


def hidden_tags(text: str) -> str:
    """The ASCII smuggled in Unicode tag characters (invisible to a reader)."""
    return " ".join(
        "".join(chr(ord(c) - 0xE0000) for c in run) for run in _TAGS.findall(text))


def mixed_script_words(text: str) -> list[str]:
    """Words mixing Latin letters with Cyrillic or Greek ones (homoglyph disguise)."""
    found = []
    for word in _WORD.findall(unicodedata.normalize("NFKC", text)):
        scripts = {_script(c) for c in word if c.isalpha()}
        if "latin" in scripts and scripts & {"cyrillic", "greek"}:
            found.append(word)
    return found


def _script(char: str) -> str:
    name = unicodedata.name(char, "")
    for script in ("LATIN", "CYRILLIC", "GREEK"):
        if name.startswith(script):
            return script.lower()
    return "other"


def _readings(text: str) -> list[str]:
    """The normalised text and its undisguised variants, for the rules to read."""
    flat = normalise(text)
    refanged = re.sub(r"\bh[tx]{2}p", "http", flat.replace("[.]", ".").replace("(.)", "."))
    joined = re.sub(r"['\"]\s*\+\s*['\"]", "", flat)
    readings = [flat, refanged, joined]
    tags = hidden_tags(text)
    if tags:
        readings.append(normalise(tags))
    return readings


def screen_prompt(text: str) -> ScreenResult:
    """Flag a corrective prompt that reads like an instruction channel rather than advice."""
    reasons: list[str] = []
    if _INVISIBLE.search(text):
        reasons.append("invisible characters")
    if _CONTROL.search(text):
        reasons.append("control characters")
    if mixed_script_words(text):
        reasons.append("mixed scripts")
    readings = _readings(text)
    # Also read it with separators removed, so "i.g.n.o.r.e" tricks do not pass.
    squeezed = [re.sub(r"[^a-z0-9 ]+", "", r) for r in readings]
    for reason, pattern in RULES:
        if any(pattern.search(r) for r in readings) or (
                reason.startswith("override") and any(pattern.search(r) for r in squeezed)):
            reasons.append(reason)
    return ScreenResult(suspicious=bool(reasons), reasons=tuple(reasons))
