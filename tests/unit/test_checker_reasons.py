"""The checker's reason for a rejected certificate names its cause, from OpenSSL's verify code.

The live cases (a wrong CA, a wrong host name, an expired certificate) run against real TLS
servers in ``tests/integration/test_tls.py``; this table covers the codes no test server makes.
"""

from __future__ import annotations

import ssl

import pytest
from redis import exceptions as redis_errors

import test_redis_connection as checker


def verify_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate "
                                            f"verify failed: {message} (_ssl.c:1006)")
    error.verify_code, error.verify_message = code, message
    error.reason = "CERTIFICATE_VERIFY_FAILED"
    return error


@pytest.mark.parametrize(("code", "message", "reason"), [
    (2, "unable to get issuer certificate", "certificate verify failed, unknown CA: unable to "
     "get issuer certificate (set REDIS_TLS_CA_CERTS to the CA that signed the server's "
     "certificate)"),
    (18, "self-signed certificate", "certificate verify failed, unknown CA: self-signed "
     "certificate (set REDIS_TLS_CA_CERTS"),
    (19, "self-signed certificate in certificate chain", "certificate verify failed, unknown CA: "
     "self-signed certificate in certificate chain (set REDIS_TLS_CA_CERTS"),
    (20, "unable to get local issuer certificate", "certificate verify failed, unknown CA: "
     "unable to get local issuer certificate (set REDIS_TLS_CA_CERTS"),
    (21, "unable to verify the first certificate", "certificate verify failed, unknown CA: "
     "unable to verify the first certificate (set REDIS_TLS_CA_CERTS"),
    (10, "certificate has expired", "certificate verify failed, certificate expired: "
     "certificate has expired (the server needs a renewed certificate, or this machine's clock "
     "is wrong)"),
    (9, "certificate is not yet valid", "certificate verify failed, certificate not yet valid: "
     "certificate is not yet valid (check the clock of this machine)"),
    (62, "Hostname mismatch, certificate is not valid for 'localhost'.",
     "certificate verify failed, hostname mismatch: Hostname mismatch, certificate is not valid "
     "for 'localhost' (connect with a host name the certificate lists, or get a certificate for "
     "this one)"),
    (64, "IP address mismatch, certificate is not valid for '127.0.0.1'.",
     "certificate verify failed, hostname mismatch: IP address mismatch, certificate is not "
     "valid for '127.0.0.1' (connect with"),
    (26, "unsupported certificate purpose",
     "certificate verify failed: unsupported certificate purpose (X509 error 26)"),
])
def test_each_verify_code_names_its_cause(code: int, message: str, reason: str) -> None:
    # As PipelinedRedis raises it: a ConnectionError chained from the ssl error.
    error = redis_errors.ConnectionError(f"Cannot connect to Redis: {message}")
    error.__cause__ = verify_error(code, message)
    failure = checker.classify(error, "rediss://localhost:6380/0")
    assert (failure.code, failure.kind) == (checker.EXIT_TLS, "TLS")
    assert failure.reason.startswith(reason)
    assert "\n" not in failure.reason
