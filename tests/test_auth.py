"""Password hashes and session tokens."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cti.auth import AuthError, SessionKeys, hash_password, is_password_hash, password_matches


def test_a_password_matches_its_hash_and_nothing_else() -> None:
    stored = hash_password("s3cret!")
    assert is_password_hash(stored)
    assert password_matches("s3cret!", stored)
    assert not password_matches("s3cret", stored)
    assert not password_matches("s3cret!", "plain-text")
    assert hash_password("s3cret!") != stored  # salted


@settings(max_examples=20, deadline=None)
@given(st.text(min_size=1, max_size=40))
def test_any_password_round_trips(password: str) -> None:
    assert password_matches(password, hash_password(password, salt=b"0123456789abcdef"))


def test_tokens_carry_subject_role_and_expiry() -> None:
    keys = SessionKeys(b"k" * 32)
    token = keys.issue("1001", "agent", now=1000.0, hours=1.0)
    session = keys.check(token, now=1000.0 + 3599)
    assert (session.subject, session.role) == ("1001", "agent")
    with pytest.raises(AuthError, match="expired"):
        keys.check(token, now=1000.0 + 3600)


def test_a_forged_or_foreign_token_is_refused() -> None:
    keys = SessionKeys(b"k" * 32)
    token = keys.issue("1001", "agent", now=0.0, hours=1.0)
    _, _, sig = token.partition(".")
    forged_head = SessionKeys(b"x" * 32).issue("1001", "supervisor", 0.0, 1.0).split(".")[0]
    with pytest.raises(AuthError, match="bad signature"):
        keys.check(f"{forged_head}.{sig}", now=1.0)
    with pytest.raises(AuthError, match="bad signature"):
        SessionKeys(b"y" * 32).check(token, now=1.0)
    for bad in ("", "abc", "a.b.c", "!!!.???"):
        with pytest.raises(AuthError):
            keys.check(bad, now=1.0)
