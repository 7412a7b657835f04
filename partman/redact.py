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
