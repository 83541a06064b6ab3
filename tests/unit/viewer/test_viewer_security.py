"""Viewer security: headers on every response (ASGI middleware), --host beyond localhost
refused without a login unless --insecure-no-auth, the server script wraps the app."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from apps.viewer.security import SECURITY_HEADERS, SecurityHeaders
from medssl.cli import build_parser, main
from medssl.cli.viewer_cmds import check_exposure
from medssl.errors import EXIT_CONFIG, ConfigError


def _call(middleware, scope_type: str = "http", headers=None) -> list:
    sent = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": headers or [(b"content-type", b"text/html")]})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive():
        return {"type": "http.request"}

    async def send(message):
        sent.append(message)

    # its own thread and loop: Playwright's sync API (e2e tests in the same process) leaves one running here
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, middleware(app)({"type": scope_type}, receive, send)).result()
    return sent


def test_every_http_response_gets_the_security_headers():
    start = _call(SecurityHeaders)[0]
    got = {k.decode(): v.decode() for k, v in start["headers"]}
    for name, value in SECURITY_HEADERS.items():
        assert got[name.lower()] == value
    assert got["x-frame-options"] == "SAMEORIGIN" and "frame-ancestors 'self'" in got["content-security-policy"]
    own = _call(SecurityHeaders, headers=[(b"referrer-policy", b"same-origin")])[0]["headers"]
    assert [v for k, v in own if k == b"referrer-policy"] == [b"same-origin"]  # an app's own value is kept


def test_websocket_scopes_pass_through_untouched():
    assert _call(SecurityHeaders, scope_type="websocket")[0]["headers"] == [(b"content-type", b"text/html")]


def _args(*extra: str):
    return build_parser().parse_args(["viewer", *extra])


def test_host_beyond_localhost_needs_a_login_or_an_explicit_flag(tmp_path, capsys):
    check_exposure(_args())  # 127.0.0.1 by default
    check_exposure(_args("--host", "localhost"))
    with pytest.raises(ConfigError, match="without authentication"):
        check_exposure(_args("--host", "0.0.0.0"))
    assert main(["viewer", "--host", "0.0.0.0", "--print-command"]) == EXIT_CONFIG
    assert "insecure-no-auth" in capsys.readouterr().err
    check_exposure(_args("--host", "0.0.0.0", "--insecure-no-auth"))
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[auth]\nredirect_uri = "https://viewer.example/oauth2callback"\ncookie_secret = "s"\n')
    check_exposure(_args("--host", "0.0.0.0", "--secrets", str(secrets)))
    secrets.write_text('[other]\nx = 1\n')
    with pytest.raises(ConfigError):
        check_exposure(_args("--host", "0.0.0.0", "--secrets", str(secrets)))


def test_server_script_is_found_by_streamlit_as_an_asgi_app():
    from streamlit.web.server.app_discovery import discover_asgi_app

    from medssl.cli.viewer_cmds import find_app

    path = find_app()
    assert path.name == "server.py"
    found = discover_asgi_app(path)
    assert found.is_asgi_app and found.app_name == "app"
