"""What is secret: the one definition of secret names, query keys, flags and references.

A name (a parameter key, an environment variable, a command-line flag, a URL query key, a
Redis CONFIG parameter) is secret when one of its words (split at separators and camelCase:
``dbPassword`` -> ``db``, ``password``) is a secret word (password, passwd, pass, pwd,
passphrase, token, secret, key, apikey, dsn, credential, auth, authorization, cookie, private,
...), when a word ends like one (``requirepass``, ``masterauth``, ``authtoken``), or when the
name contains ``pass``, ``secret``, ``token``, ``auth`` or ``api_key`` anywhere
(``tokenizer``, ``bypass``). This is the union of what the separate lists of the past
accepted: masking errs on the side of hiding. A few query keys and flags whose names do not
say so are secret too (``sig``, ``signature``, ``passfile``; ``redis-cli -a``).
"""

from __future__ import annotations

import re

__all__ = [
    "MASK",
    "MIN_SECRET",
    "is_reference",
    "is_secret_flag",
    "is_secret_name",
    "is_secret_query_key",
]

#: What a secret is replaced by, everywhere.
MASK = "***"
#: Shorter values are never masked by value: "a" or "1" would garble every text.
MIN_SECRET = 3

_SECRET_WORDS = frozenset(
    {
        "apikey",
        "auth",
        "authorization",
        "cookie",
        "credential",
        "credentials",
        "dsn",
        "key",
        "pass",
        "passphrase",
        "passwd",
        "password",
        "private",
        "privkey",
        "pwd",
        "secret",
        "secrets",
        "token",
        "tokens",
    }
)
# Words ending like a secret, written without a separator: requirepass, masterauth. Not
# "key": monkey and hotkey are not secrets (api_key and apiKey split into words).
_SECRET_SUFFIXES = ("pass", "passwd", "password", "token", "secret", "dsn", "auth")
# Anywhere in the name: what the step parameters' and Redis CONFIG lists matched.
_SECRET_PART = re.compile(r"pass|secret|token|auth|api_?key", re.IGNORECASE)
# camelCase and separators split names into words: dbPassword -> db, password.
_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
# Query keys that carry a secret although no rule above says so: URL signatures (S3, Azure
# SAS) and libpq's password file.
_ALSO_SECRET_QUERY_KEYS = frozenset({"sig", "signature", "passfile", "x-amz-signature"})
# Flags whose value is a secret although their name does not say so (redis-cli -a PASS).
_ALSO_SECRET_FLAGS = frozenset({"-a", "--masterauth"})
# ${REDIS_PASSWORD} or $REDIS_PASSWORD names where a secret comes from; it is not one. Only
# the braced form or an upper-case name counts: "$ecret1" may well be a password.
_REFERENCE = re.compile(r"""["']?(?:\$\{[A-Za-z_][A-Za-z0-9_]*\}|\$[A-Z_][A-Z0-9_]*)["']?""")


def is_secret_name(name: str) -> bool:
    """Whether a key, variable, flag or parameter called ``name`` holds a secret."""
    if _SECRET_PART.search(name):
        return True
    words = [w.lower() for w in _WORD.findall(name)]
    return any(w in _SECRET_WORDS or w.endswith(_SECRET_SUFFIXES) for w in words)


def is_secret_query_key(key: str) -> bool:
    """Whether the URL query parameter ``key`` (``?password=``, ``?token=``) is secret."""
    return key.lower() in _ALSO_SECRET_QUERY_KEYS or is_secret_name(key)


def is_secret_flag(flag: str) -> bool:
    """Whether the command-line flag ``flag`` (``--requirepass``, ``-a``) takes a secret."""
    return flag.lower() in _ALSO_SECRET_FLAGS or (
        flag.startswith("-") and is_secret_name(flag.lstrip("-"))
    )


def is_reference(value: str) -> bool:
    """Whether ``value`` only names a variable (``${REDIS_PASSWORD}``): kept, not masked."""
    return _REFERENCE.fullmatch(value) is not None
