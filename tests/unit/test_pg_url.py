"""models/pg_url.py: libpq ``DATABASE_URL`` options as Tortoise/asyncpg credentials."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme

from models.db import describe_database, tortoise_config
from models.pg_url import DatabaseURLError, ssl_option, tortoise_connection
from settings import normalise_database_url

BASE = "postgres://app:s3cret@db.example.com:6543/appdb"


def credentials(query: str) -> dict[str, Any]:
    config = tortoise_connection(f"{BASE}?{query}" if query else BASE)
    assert config["engine"] == "tortoise.backends.asyncpg"
    return dict(config["credentials"])


def test_plain_url_gives_tortoise_credentials_without_ssl() -> None:
    assert credentials("") == {"host": "db.example.com", "port": 6543, "user": "app",
                               "password": "s3cret", "database": "appdb"}


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer", "require"])
def test_non_verifying_modes_pass_asyncpgs_mode_string(mode: str) -> None:
    assert credentials(f"sslmode={mode}")["ssl"] == mode


@pytest.mark.parametrize(("query", "check_hostname"), [
    ("sslmode=verify-full", True),
    ("sslmode=verify-ca", False),
    ("sslmode=verify-full&sslrootcert=system", True),
    ("ssl=true", True),
])
def test_verifying_modes_build_a_context(query: str, check_hostname: bool) -> None:
    context = credentials(query)["ssl"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is check_hostname


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "root.crt"
    trustme.CA().cert_pem.write_to_path(str(path))
    return path


@pytest.mark.parametrize(("sslmode", "check_hostname"), [
    ("verify-full", True), ("verify-ca", False),
    ("require", False),  # libpq: require with a root CA file behaves as verify-ca
    (None, False),  # libpq checks the CA whenever a root CA file is given
])
def test_sslrootcert_is_the_only_trusted_ca(ca_file: Path, sslmode: str | None,
                                            check_hostname: bool) -> None:
    query = f"sslrootcert={ca_file}" + (f"&sslmode={sslmode}" if sslmode else "")
    context = credentials(query)["ssl"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is check_hostname
    assert len(context.get_ca_certs()) == 1


def test_no_sslmode_leaves_asyncpgs_default() -> None:
    assert ssl_option(None) is None
    assert "ssl" not in credentials("maxsize=3")


@pytest.mark.parametrize(("query", "message"), [
    ("sslmode=required", "sslmode must be one of"),
    ("sslmode=verify-full&sslrootcert=/nonexistent/root.crt", "sslrootcert"),
    ("ssl=false&sslmode=require", "not both"),
    ("ssl=maybe", "ssl must be true or false"),
    ("maxsize=lots", "maxsize must be int"),
    ("target_session_attrs=primary-ish", "target_session_attrs must be one of"),
    ("sslmdoe=require", "unknown option(s): sslmdoe"),
    ("options=-c%20work_mem", "-c name=value"),
])
def test_bad_options_fail_with_a_clear_error(query: str, message: str) -> None:
    with pytest.raises(DatabaseURLError, match=message.replace("(", r"\(").replace(")", r"\)")):
        credentials(query)


def test_tortoise_ssl_false_means_plaintext_not_true() -> None:
    # Tortoise's own cast is bool("false") == True.
    assert credentials("ssl=false")["ssl"] == "disable"


@pytest.mark.parametrize(("query", "expected"), [
    ("maxsize=20&minsize=2", {"maxsize": 20, "minsize": 2}),
    ("statement_cache_size=0", {"statement_cache_size": 0}),
    ("command_timeout=5&timeout=2.5", {"command_timeout": 5.0, "timeout": 2.5}),
    ("max_inactive_connection_lifetime=30", {"max_inactive_connection_lifetime": 30.0}),
    ("schema=tenant&application_name=api", {"schema": "tenant", "application_name": "api"}),
    ("target_session_attrs=read-write", {"target_session_attrs": "read-write"}),
    ("connect_timeout=10", {"timeout": 10.0}),
    ("sslnegotiation=direct&sslmode=require", {"direct_tls": True, "ssl": "require"}),
    ("options=-c%20search_path%3Dtenant%20-c%20statement_timeout%3D5s",
     {"server_settings": {"search_path": "tenant", "statement_timeout": "5s"}}),
    ("options=--lock-timeout%3D1s", {"server_settings": {"lock_timeout": "1s"}}),
])
def test_options_asyncpg_understands_are_cast_and_kept(query: str,
                                                       expected: dict[str, Any]) -> None:
    got = credentials(query)
    assert {key: got[key] for key in expected} == expected
    assert got["host"] == "db.example.com"


def test_zero_connect_timeout_keeps_asyncpgs_default() -> None:
    assert "timeout" not in credentials("connect_timeout=0")


@pytest.mark.parametrize("query", [
    "sslmode=require&channel_binding=require",  # Neon
    "sslmode=require&sslcert=/c.crt&sslkey=/c.key&sslpassword=s3cret",
    "keepalives=1&gssencmode=disable",
])
def test_libpq_only_options_are_dropped_with_a_warning_naming_them(
        query: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="models.pg_url"):
        got = credentials(query)
    dropped = {pair.split("=")[0] for pair in query.split("&")} - {"sslmode"}
    assert not dropped & set(got)
    for name in dropped:
        assert repr(name) in caplog.text
    assert "s3cret" not in caplog.text
    assert "/c.key" not in caplog.text


def test_neon_endpoint_option_is_dropped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="models.pg_url"):
        got = credentials("sslmode=require&options=endpoint%3Dep-cool-123")
    assert "server_settings" not in got
    assert "'endpoint'" in caplog.text and "ep-cool-123" not in caplog.text


def test_password_with_brackets_and_dbname_in_query() -> None:
    config = tortoise_connection("postgres://u:p[w]d@h/?dbname=other&sslmode=require")
    got = config["credentials"]
    assert (got["password"], got["database"], got["ssl"]) == ("p[w]d", "other", "require")


def test_platform_urls_pass_settings_and_reach_tortoise_as_credentials() -> None:
    url = normalise_database_url(
        "postgresql://u:pw@ep-x.neon.tech/neondb?sslmode=require&channel_binding=require")
    assert url == "postgres://u:pw@ep-x.neon.tech/neondb?sslmode=require&channel_binding=require"
    connection = tortoise_config(url)["connections"]["default"]
    assert connection["credentials"]["ssl"] == "require"
    assert "sslmode" not in connection["credentials"]


def test_sqlite_url_stays_a_url() -> None:
    assert tortoise_config("sqlite://data/x.sqlite3")["connections"]["default"] == (
        "sqlite://data/x.sqlite3")


def test_describe_database_leaves_out_the_query() -> None:
    described = describe_database("postgres://u:pw@h:5432/db?sslmode=require&password=s3cret")
    assert described == "PostgreSQL (h:5432/db)"


def test_sslrootcert_with_a_non_verifying_mode_is_ignored_with_a_warning(
        ca_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="models.pg_url"):
        assert credentials(f"sslmode=prefer&sslrootcert={ca_file}")["ssl"] == "prefer"
    assert "sslrootcert is ignored with sslmode=prefer" in caplog.text


def test_user_and_database_names_are_percent_decoded_as_libpq_does() -> None:
    # Azure-style "user@server" names, and any name with a reserved character, arrive encoded.
    credentials = tortoise_connection(
        "postgres://app%40server:p%40ss@db.example.com:5432/my%20db?sslmode=disable"
    )["credentials"]
    assert credentials["user"] == "app@server"
    assert credentials["password"] == "p@ss"  # decoded once, not twice
    assert credentials["database"] == "my db"
    literal = tortoise_connection("postgres://u:p%2540@h/db%2541")["credentials"]
    assert (literal["password"], literal["database"]) == ("p%40", "db%41")
