"""A libpq ``postgres://`` URL as Tortoise's asyncpg connection config.

Heroku, Neon, Supabase and Render hand out ``DATABASE_URL``s written for libpq, such as
``postgres://u:p@host/db?sslmode=require&channel_binding=require``. Tortoise passes the query
options to ``asyncpg.connect()`` as keywords, which rejects libpq's (``TypeError: connect() got
an unexpected keyword argument 'sslmode'``). ``tortoise_connection`` builds the credentials
dict instead: Tortoise's ``expand_db_url`` parses user, password, host, port and database; the
options Tortoise and asyncpg take (``maxsize``, ``minsize``, ``statement_cache_size``,
``command_timeout``, ``schema``, ...) are cast with Tortoise's own table, extended.

``sslmode`` follows libpq's table, https://www.postgresql.org/docs/current/libpq-ssl.html
("SSL Mode Descriptions"); asyncpg's ``ssl=`` gets:

============  =======================================  ==========================================
sslmode       libpq                                    here
============  =======================================  ==========================================
(unset)       ``prefer``                               nothing: asyncpg's default is ``prefer``
disable       plaintext only                           ``"disable"``
allow         plaintext, TLS if the server insists     ``"allow"``
prefer        TLS, plaintext if the server has none    ``"prefer"``
require       TLS, certificate not checked; with a     ``"require"``; with ``sslrootcert``, an
              root CA file, as verify-ca               ``SSLContext`` as for verify-ca
verify-ca     TLS, certificate signed by a trusted CA  ``SSLContext``, host name not checked
verify-full   verify-ca, and the host name matches     ``SSLContext``, host name checked
============  =======================================  ==========================================

Departure from libpq: without ``sslrootcert``, verify-ca and verify-full trust the system's CA
store (what libpq 16+ does for ``sslrootcert=system``), not ``~/.postgresql/root.crt``: managed
providers sign with public CAs, and a container has no ``~/.postgresql``. To pin a private CA
(a self-hosted server), name its file in ``sslrootcert``. ``sslrootcert`` without ``sslmode``
means verify-ca, as libpq checks the CA whenever the file exists (a server without TLS is then
refused, where libpq's ``prefer`` would fall back); with disable, allow or prefer it is ignored,
with a warning. The mode strings are asyncpg's own, which like libpq read ``PGSSLROOTCERT`` and
``~/.postgresql/`` for ``require``. Tortoise's ``ssl=true|false`` keeps working (true is
verify-full), without its bool cast reading "false" as true.

Other libpq options are translated where asyncpg has the same thing (``target_session_attrs``,
``connect_timeout``, ``options=-c name=value``, ``sslnegotiation=direct``, ``dbname``) and
otherwise dropped with a warning naming the option (never its value, which could be a secret);
an option neither libpq nor asyncpg knows fails start-up.
"""

from __future__ import annotations

import logging
import shlex
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote

from tortoise.backends.base.config_generator import DB_LOOKUP, expand_db_url

log = logging.getLogger(__name__)

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
SESSION_ATTRS = ("any", "primary", "standby", "prefer-standby", "read-write", "read-only")

# Options Tortoise's asyncpg client or asyncpg itself take from a string, with their casts:
# Tortoise's own table (min_size, max_size, statement_cache_size, ...) and what it leaves as
# strings. Its bool cast for ``ssl`` reads "false" as true, so ``ssl`` is translated below.
_CASTS: dict[str, Callable[[str], Any]] = {
    **{key: cast for key, cast in DB_LOOKUP["asyncpg"]["cast"].items() if key != "ssl"},
    "minsize": int, "maxsize": int, "timeout": float, "command_timeout": float,
    "schema": str, "application_name": str, "host": str, "port": int, "user": str,
    "password": str, "passfile": str, "service": str, "servicefile": str, "krbsrvname": str,
    "gsslib": str,
}
# libpq options asyncpg has no keyword for: dropped, with a warning that names them.
_DROPPED = frozenset({
    "channel_binding", "require_auth", "sslcert", "sslkey", "sslpassword", "sslcertmode",
    "sslcrl", "sslcrldir", "sslsni", "sslcompression", "sslkeylogfile", "requiressl",
    "ssl_min_protocol_version", "ssl_max_protocol_version", "min_protocol_version",
    "max_protocol_version", "gssencmode", "gssdelegation", "hostaddr", "keepalives",
    "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout",
    "client_encoding", "fallback_application_name", "replication", "load_balance_hosts",
    "requirepeer", "scram_client_key", "scram_server_key",
})
_TRANSLATED = frozenset({"sslmode", "sslrootcert", "ssl", "target_session_attrs",
                         "connect_timeout", "options", "sslnegotiation", "dbname"})


class DatabaseURLError(ValueError):
    """``DATABASE_URL`` holds an option or value the service cannot use."""


def tortoise_connection(url: str) -> dict[str, Any]:
    """Tortoise's ``{"engine", "credentials"}`` for a ``postgres://`` URL with libpq options."""
    # Split by hand: urlsplit would choke on a "[" in a password, which expand_db_url quotes.
    base, _, query_string = url.partition("?")
    query = dict(parse_qsl(query_string, keep_blank_values=True))
    ours = {key: query.pop(key) for key in list(query) if key in _TRANSLATED}
    dropped = sorted(key for key in query if key in _DROPPED)
    for key in dropped:
        del query[key]
        log.warning("DATABASE_URL option %r has no asyncpg equivalent; ignored", key)
    unknown = sorted(set(query) - set(_CASTS))
    if unknown:
        raise DatabaseURLError(f"DATABASE_URL has unknown option(s): {', '.join(unknown)}")

    # Tortoise parses the rest (user info, host, port, path); the options are cast here.
    config = expand_db_url(base)
    credentials: dict[str, Any] = config["credentials"]
    # Tortoise decodes the password only; libpq decodes every part (Azure's "user%40server").
    for key in ("user", "database"):
        if credentials.get(key):
            credentials[key] = unquote(credentials[key])
    credentials.update({key: _cast(key, value, _CASTS[key]) for key, value in query.items()})
    if "dbname" in ours and not credentials.get("database"):
        credentials["database"] = ours["dbname"]
    ssl_value = ssl_option(ours.get("sslmode"), ours.get("sslrootcert"), ours.get("ssl"))
    if ssl_value is not None:
        credentials["ssl"] = ssl_value
    if "target_session_attrs" in ours:
        credentials["target_session_attrs"] = _one_of(
            "target_session_attrs", ours["target_session_attrs"], SESSION_ATTRS)
    if "connect_timeout" in ours:
        seconds = _cast("connect_timeout", ours["connect_timeout"], float)
        if seconds > 0:  # libpq: zero or negative waits forever; asyncpg keeps its 60 s then
            credentials["timeout"] = seconds
    if ours.get("sslnegotiation") == "direct":
        credentials["direct_tls"] = True
    if "options" in ours:
        settings = server_settings(ours["options"])
        if settings:
            credentials["server_settings"] = settings
    return config


def ssl_option(sslmode: str | None, sslrootcert: str | None = None,
               ssl_flag: str | None = None) -> str | ssl.SSLContext | None:
    """asyncpg's ``ssl=`` for libpq's ``sslmode`` / ``sslrootcert`` (table in the module doc).

    ``ssl_flag`` is Tortoise's own ``?ssl=true|false``, kept working (its bool cast would read
    ``false`` as true); ``None`` means "leave asyncpg's default", which is ``prefer``.
    """
    if ssl_flag is not None:
        if sslmode is not None:
            raise DatabaseURLError("DATABASE_URL: give sslmode or ssl, not both")
        sslmode = {"true": "verify-full", "false": "disable"}.get(ssl_flag.lower())
        if sslmode is None:
            raise DatabaseURLError("DATABASE_URL: ssl must be true or false")
    if sslmode is None:
        if not sslrootcert:
            return None
        sslmode = "verify-ca"  # libpq checks the CA whenever a root CA file is given
    mode = _one_of("sslmode", sslmode, SSL_MODES)
    if mode == "require" and sslrootcert:
        mode = "verify-ca"  # libpq: "require" with a root CA file behaves as verify-ca
    if mode not in ("verify-ca", "verify-full"):
        if sslrootcert:
            log.warning("DATABASE_URL sslrootcert is ignored with sslmode=%s", mode)
        return mode
    cafile = None if sslrootcert in (None, "", "system") else sslrootcert
    try:
        context = ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        raise DatabaseURLError(
            f"DATABASE_URL: sslrootcert {cafile!r} cannot be read as CA certificates: {exc}"
        ) from exc
    context.check_hostname = mode == "verify-full"
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def server_settings(options: str) -> dict[str, str]:
    """libpq's ``options`` (``-c name=value`` / ``--name=value``) as asyncpg's server_settings.

    Anything else (Neon's ``endpoint=<id>``, needed only by clients without SNI, which asyncpg
    sends) is dropped with a warning.
    """
    settings: dict[str, str] = {}
    tokens = shlex.split(options)
    while tokens:
        token = tokens.pop(0)
        if token == "-c" and tokens:
            token = tokens.pop(0)
        elif token.startswith("-c"):
            token = token[2:]
        elif token.startswith("--"):
            token = token[2:]
        else:
            log.warning("DATABASE_URL options entry %r is not -c name=value; ignored",
                        token.split("=", 1)[0])
            continue
        name, sep, value = token.partition("=")
        if not sep or not name:
            raise DatabaseURLError("DATABASE_URL: options must be -c name=value")
        settings[name.replace("-", "_")] = value
    return settings


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise DatabaseURLError(
            f"DATABASE_URL: {name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _cast(name: str, value: str, cast: Callable[[str], Any]) -> Any:
    try:
        return cast(value)
    except ValueError:
        kind = getattr(cast, "__name__", "valid")
        raise DatabaseURLError(f"DATABASE_URL: {name} must be {kind}, got {value!r}") from None
