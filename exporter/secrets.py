"""Judge secret values without ever returning them: placeholders, weak values, known test keys.

Every function here returns rule names and fixed text; none of them echoes the value.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

__all__ = [
    "SECRET_FORMATS",
    "SecretFormat",
    "is_known_example",
    "is_placeholder",
    "is_weak",
    "shannon_entropy",
]


@dataclass(frozen=True)
class SecretFormat:
    """A known secret format: what a real value looks like, and what marks a test key."""

    description: str
    pattern: str
    test_prefixes: tuple[str, ...] = ()


SECRET_FORMATS: dict[str, SecretFormat] = {
    "aws_access_key_id": SecretFormat("AWS access key id", r"^(AKIA|ASIA)[A-Z0-9]{16}$"),
    "aws_secret_access_key": SecretFormat("AWS secret access key", r"^[A-Za-z0-9/+=]{40}$"),
    "stripe_secret_key": SecretFormat(
        "Stripe secret key", r"^(sk|rk)_(live|test)_[A-Za-z0-9]{16,}$", ("sk_test_", "rk_test_")
    ),
    "github_token": SecretFormat(
        "GitHub token", r"^(gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})$"
    ),
    "slack_token": SecretFormat("Slack token", r"^xox[abprs]-[A-Za-z0-9-]{10,}$"),
    "jwt_secret": SecretFormat("HMAC signing secret", r"^.{32,}$"),
    "hex32": SecretFormat("32+ hex characters", r"^[0-9a-fA-F]{32,}$"),
    "database_url": SecretFormat(
        "database URL with a password", r"^[a-z][a-z0-9+]*://[^:/@\s]+:[^@\s]+@[^/\s]+(/.*)?$"
    ),
}

# Keys published in vendor documentation and tutorials; seeing one in a deploy is a leak or a
# leftover. Compared exactly, so nothing here can match a real key by accident.
_KNOWN_EXAMPLES = frozenset(
    {
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
        "sk_test_BQokikJOvBiI2HlWgH4olfQ2",
        "pk_test_TYooMQauvdEDq54NiTphI7jx",
        "your-256-bit-secret",
        "your-secret-key",
        "supersecret",
        "secret",
        "password",
        "s3cr3t",
        "django-insecure-change-me",
        "development",
        "keyboard cat",
        "xoxb-not-a-real-token-this-will-not-work",
    }
)

_PLACEHOLDER = re.compile(
    r"""^(
        \$\{[^}]*\} | \$[A-Za-z_][A-Za-z0-9_]* | \{\{.*\}\} | <[^>]*> | %[A-Za-z_]+%
      | x{3,} | \*{3,} | \.{3,} | -+ | 0+ | 1234(5678?)?9?0?
      | (change[_-]?me|changeit|replace[_-]?me|todo|tbd|fixme|placeholder|dummy|example|sample
         |test|testing|default|none|null|undefined|empty|insert[_-].*|your[_-].*([_-]here)?|fill[_-]?me)
    )$""",
    re.IGNORECASE | re.VERBOSE,
)


def is_placeholder(value: str) -> bool:
    """True for values that are obviously not a real secret: `changeme`, `${VAR}`, `xxx`."""
    stripped = value.strip().strip("'\"")
    return stripped == "" or bool(_PLACEHOLDER.match(stripped))


def shannon_entropy(value: str) -> float:
    """Bits per character of the value's character distribution."""
    if not value:
        return 0.0
    counts = Counter(value)
    return -sum(c / len(value) * math.log2(c / len(value)) for c in counts.values())


def is_weak(value: str, min_length: int = 16) -> str | None:
    """Why a secret is weak (fixed text), or None."""
    if len(value) < min_length:
        return f"shorter than {min_length} characters"
    if len(set(value)) <= 2:
        return "repeats one or two characters"
    if shannon_entropy(value) < 3.0:
        return "low entropy (under 3 bits per character)"
    return None


def is_known_example(value: str) -> bool:
    """True for a key published in documentation (AWS, Stripe, jwt.io examples and friends)."""
    return value.strip() in _KNOWN_EXAMPLES or value.strip().upper().endswith("EXAMPLEKEY")
