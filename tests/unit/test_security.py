"""Bearer tokens: parsing ``warehouse.tokens``, finding a request's role, and what each role may do."""

from __future__ import annotations

import hmac
from types import SimpleNamespace

import pytest
from pyramid import testing

from warehouse import security
from warehouse import sessions
from warehouse.security import OPERATE, VIEW, TokenSecurityPolicy, Root, parse_tokens

TOKENS = [("operator", "op-secret"), ("viewer", "view-secret"), ("viewer", "second-viewer-secret")]


def request_with(authorization: str | None) -> testing.DummyRequest:
    headers = {} if authorization is None else {"Authorization": authorization}
    return testing.DummyRequest(headers=headers)


@pytest.fixture
def policy() -> TokenSecurityPolicy:
    return TokenSecurityPolicy(TOKENS)


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
    policy: TokenSecurityPolicy, authorization: str, role: str
) -> None:
    assert policy.identity(request_with(authorization)) == {"role": role, "by": "token"}


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
    policy: TokenSecurityPolicy, authorization: str | None
) -> None:
    assert policy.identity(request_with(authorization)) is None


def test_no_configured_tokens_means_nobody_is_authenticated() -> None:
    assert TokenSecurityPolicy([]).identity(request_with("Bearer anything")) is None


def test_the_first_role_of_a_token_listed_twice_wins() -> None:
    policy = TokenSecurityPolicy([("viewer", "shared"), ("operator", "shared")])

    assert policy.identity(request_with("Bearer shared")) == {"role": "viewer", "by": "token"}


@pytest.mark.parametrize(
    "presented", ["op-secret", "view-secret", "second-viewer-secret", "wrong"], ids=["first", "second", "last", "none"]
)
def test_every_token_is_compared_in_constant_time_whichever_matches(
    policy: TokenSecurityPolicy, presented: str, monkeypatch: pytest.MonkeyPatch
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
    policy: TokenSecurityPolicy, identity: dict | None, may_view: bool, may_operate: bool
) -> None:
    request = SimpleNamespace(identity=identity)
    context = Root(request)  # type: ignore[arg-type]

    assert bool(policy.permits(request, context, VIEW)) is may_view
    assert bool(policy.permits(request, context, OPERATE)) is may_operate


def test_authenticated_userid_is_the_role(policy: TokenSecurityPolicy) -> None:
    assert policy.authenticated_userid(SimpleNamespace(identity={"role": "viewer"})) == "viewer"
    assert policy.authenticated_userid(SimpleNamespace(identity=None)) is None


def test_includeme_refuses_malformed_tokens_at_startup() -> None:
    config = testing.setUp(settings={"warehouse.tokens": "root:secret"})
    try:
        with pytest.raises(ValueError, match="warehouse.tokens"):
            config.include("warehouse.security")
    finally:
        testing.tearDown()


# --- browser sessions ------------------------------------------------------------------------------

SECRET = b"a session secret"


def session_request(token: str | None, authorization: str | None = None, cookie: bool = True) -> testing.DummyRequest:
    request = request_with(authorization)
    if cookie:
        request.cookies[sessions.COOKIE_NAME] = "signed"
    if token is not None:
        request.session[sessions.TOKEN_KEY] = sessions.token_fingerprint(SECRET, token.encode())
    return request


def test_a_session_stands_for_the_token_it_was_started_with() -> None:
    policy = TokenSecurityPolicy(TOKENS, SECRET)
    assert policy.identity(session_request("op-secret")) == {"role": "operator", "by": "session"}
    assert policy.identity(session_request("view-secret")) == {"role": "viewer", "by": "session"}


def test_a_session_of_a_token_taken_out_of_the_settings_is_over() -> None:
    assert TokenSecurityPolicy([("viewer", "view-secret")], SECRET).identity(session_request("op-secret")) is None


def test_a_session_under_another_secret_is_nobody() -> None:
    assert TokenSecurityPolicy(TOKENS, b"another secret").identity(session_request("op-secret")) is None


def test_an_authorization_header_decides_alone_even_beside_a_good_session() -> None:
    policy = TokenSecurityPolicy(TOKENS, SECRET)
    assert policy.identity(session_request("op-secret", authorization="Bearer wrong")) is None
    assert policy.identity(session_request("op-secret", authorization="Bearer view-secret")) == {"role": "viewer", "by": "token"}


def test_without_the_cookie_the_session_is_not_read() -> None:
    assert TokenSecurityPolicy(TOKENS, SECRET).identity(session_request("op-secret", cookie=False)) is None


def test_the_session_secret_is_the_configured_one_or_derived_from_every_token() -> None:
    assert sessions.session_secret({"warehouse.session_secret": " set ", "warehouse.tokens": "operator:a"}) == b"set"
    derived = sessions.session_secret({"warehouse.tokens": "operator:a viewer:b"})
    assert derived == sessions.session_secret({"warehouse.tokens": "viewer:b  operator:a"})
    assert derived != sessions.session_secret({"warehouse.tokens": "operator:a viewer:c"})
    assert len(derived) == 64 and b"operator" not in derived  # a digest, not the tokens


def test_csrf_is_asked_of_cookie_requests_only() -> None:
    assert sessions.relies_on_session(session_request("op-secret"))
    assert not sessions.relies_on_session(session_request("op-secret", authorization="Bearer op-secret"))
    assert not sessions.relies_on_session(session_request(None, cookie=False))
