"""Connection strings without their passwords, for every message and log line."""

from __future__ import annotations

from typing import Optional


def password_of(url: str) -> Optional[str]:
    from psycopg.conninfo import conninfo_to_dict

    try:
        return conninfo_to_dict(url).get("password") or None
    except Exception:  # unparsable strings carry nothing we can find; redact() says so
        return None


def redact(url: str) -> str:
    """host=… port=… dbname=… user=…: what identifies the target, never the password."""
    from psycopg.conninfo import conninfo_to_dict

    if not url:
        return "the server named by PG* variables"
    try:
        parts = conninfo_to_dict(url)
    except Exception:
        return "(an unparsable connection string)"
    shown = [f"{k}={parts[k]}" for k in ("host", "port", "dbname", "user") if parts.get(k)]
    return " ".join(shown) or "(default server)"


def redact_text(text: str, url: str) -> str:
    """text with the connection string's password, if it appears, replaced by ***."""
    secret = password_of(url)
    return text.replace(secret, "***") if secret else text


def parse_failure(url: str) -> Optional[str]:
    """Why a connection string cannot be parsed, without a word of it: libpq's own message quotes the token
    it stopped at, which may be a piece of the password."""
    from psycopg.conninfo import conninfo_to_dict

    if not url:
        return None
    try:
        conninfo_to_dict(url)
    except Exception:
        return ("the connection string cannot be parsed (expected postgresql://user@host:port/dbname or"
                " key=value pairs); its text is not shown, as it may hold a password")
    return None


def connection_failure(url: str, exc: BaseException) -> str:
    """'cannot connect to host=… port=…: <libpq's cause>' on one line, the password never in it."""
    text = " ".join(part.strip() for part in str(exc).strip().splitlines() if part.strip())
    # libpq says "connection to server at "h", port p failed: <cause>"; the cause is what the user needs.
    cause = text.rsplit(" failed: ", 1)[-1] if " failed: " in text else text.removeprefix("connection failed: ")
    cause = cause.split(" Is the server running")[0].strip() or "connection failed"
    return f"cannot connect to {redact(url)}: {redact_text(cause, url)}"
