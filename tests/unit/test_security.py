"""Bearer tokens: parsing ``warehouse.tokens``, finding a request's role, and what each role may do."""

from __future__ import annotations

import hmac
from types import SimpleNamespace

import pytest
from pyramid import testing

from warehouse import security
from warehouse.security import OPERATE, VIEW, BearerTokenSecurityPolicy, Root, parse_tokens

TOKENS = [("operator", "op-secret"), ("viewer", "view-secret"), ("viewer", "second-viewer-secret")]


def request_with(authorization: str | None) -> testing.DummyRequest:
    headers = {} if authorization is None else {"Authorization": authorization}
    return testing.DummyRequest(headers=headers)


@pytest.fixture
def policy() -> BearerTokenSecurityPolicy:
    return BearerTokenSecurityPolicy(TOKENS)


def test_parse_tokens_reads_space_separated_role_token_pairs() -> None:
    assert parse_tokens("operator:abc viewer:def\n  viewer:g:h") == [
        ("operator", "abc"),
        ("viewer", "def"),
        ("viewer", "g:h"),
    ]


def test_parse_tokens_of_nothing_is_no_tokens() -> None:
    assert parse_tokens("") == []
    assert parse_tokens("   ") == []


@pytest.mark.parametrize(
    "value",
    ["operator", "operator:", ":abc", "admin:abc", "Operator:abc", "viewer:ok operator", "operator=abc"],
)
def test_parse_tokens_rejects_malformed_pairs(value: str) -> None:
    with pytest.raises(ValueError, match="warehouse.tokens"):
        parse_tokens(value)


def test_parse_tokens_error_does_not_repeat_the_secret() -> None:
    with pytest.raises(ValueError) as error:
        parse_tokens("viewer:fine admin:top-secret-value")

    assert "top-secret-value" not in str(error.value)
    assert "admin" in str(error.value)


@pytest.mark.parametrize(
    ("authorization", "role"),
    [
        ("Bearer op-secret", "operator"),
        ("bearer op-secret", "operator"),
        ("BEARER view-secret", "viewer"),
        ("Bearer second-viewer-secret", "viewer"),
    ],
)
def test_identity_is_the_role_of_the_presented_token(
    policy: BearerTokenSecurityPolicy, authorization: str, role: str
) -> None:
    assert policy.identity(request_with(authorization)) == {"role": role}


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "op-secret",
        "Basic op-secret",
        "Token op-secret",
        "Bearer op-secre",  # a prefix of a token
        "Bearer op-secretX",  # a token plus more
        "Bearer OP-SECRET",
        "Bearer operator:op-secret",
        "Bearer nobody-has-this",
    ],
)
def test_identity_is_none_without_a_valid_bearer_token(
    policy: BearerTokenSecurityPolicy, authorization: str | None
) -> None:
    assert policy.identity(request_with(authorization)) is None


def test_no_configured_tokens_means_nobody_is_authenticated() -> None:
    assert BearerTokenSecurityPolicy([]).identity(request_with("Bearer anything")) is None


def test_the_first_role_of_a_token_listed_twice_wins() -> None:
    policy = BearerTokenSecurityPolicy([("viewer", "shared"), ("operator", "shared")])

    assert policy.identity(request_with("Bearer shared")) == {"role": "viewer"}


@pytest.mark.parametrize(
    "presented", ["op-secret", "view-secret", "second-viewer-secret", "wrong"], ids=["first", "second", "last", "none"]
)
def test_every_token_is_compared_in_constant_time_whichever_matches(
    policy: BearerTokenSecurityPolicy, presented: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[bytes] = []
    real_compare = hmac.compare_digest

    def counting_compare(a: bytes, b: bytes) -> bool:
        compared.append(b)
        return real_compare(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", counting_compare)

    policy.identity(request_with(f"Bearer {presented}"))

    assert compared == [token.encode() for _, token in TOKENS]


@pytest.mark.parametrize(
    ("identity", "may_view", "may_operate"),
    [
        ({"role": "operator"}, True, True),
        ({"role": "viewer"}, True, False),
        (None, False, False),
    ],
)
def test_permissions_of_each_role(
    policy: BearerTokenSecurityPolicy, identity: dict | None, may_view: bool, may_operate: bool
) -> None:
    request = SimpleNamespace(identity=identity)
    context = Root(request)  # type: ignore[arg-type]

    assert bool(policy.permits(request, context, VIEW)) is may_view
    assert bool(policy.permits(request, context, OPERATE)) is may_operate


def test_authenticated_userid_is_the_role(policy: BearerTokenSecurityPolicy) -> None:
    assert policy.authenticated_userid(SimpleNamespace(identity={"role": "viewer"})) == "viewer"
    assert policy.authenticated_userid(SimpleNamespace(identity=None)) is None


def test_includeme_refuses_malformed_tokens_at_startup() -> None:
    config = testing.setUp(settings={"warehouse.tokens": "root:secret"})
    try:
        with pytest.raises(ValueError, match="warehouse.tokens"):
            config.include("warehouse.security")
    finally:
        testing.tearDown()
