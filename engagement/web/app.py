"""The Flask app factory and its security rules.

- Off the loopback interface the app refuses to exist without an access token; only the token's SHA-256 is kept.
  A request proves it with ``Authorization: Bearer TOKEN`` or with the signed session cookie the login form sets.
- Every POST carries the session's CSRF token (``csrf_token`` form field), else 400.
- Files are served only from inside the runs folder (see ``sessions.run_file``); URLs hold pseudonymous student
  IDs only, never names.
- Every response but the stylesheet and scripts is ``Cache-Control: no-store``: pages, tables, charts and videos
  describe people, and a copy kept by a browser or a proxy is one that no withdrawal or purge can reach.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from pathlib import Path
from typing import Any

from flask import Flask, Response, abort, current_app, redirect, render_template, request, session, url_for

from engagement.consent.registry import Registry
from engagement.errors import UserError

TOKEN_HEADER = "Bearer "
OPEN_ENDPOINTS = {"login", "static"}
MAX_REQUEST_BYTES = 8 * 1024 * 1024  # forms and roster CSVs
MAX_VIDEO_UPLOAD_BYTES = 256 * 1024 * 1024  # a short video of a room for a seat plan's reference frame (that route only)
VIDEO_UPLOAD_ENDPOINTS = {"seats.upload"}


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def token_digest(token: str) -> str:
    """The SHA-256 of an access token: what the app keeps instead of the token."""
    return hashlib.sha256(token.encode()).hexdigest()


def read_token_file(path: Path) -> str:
    """The token's digest from a file holding the token; a missing, unreadable or empty file is a UserError."""
    try:
        token = Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read the token file {path}: {getattr(error, 'strerror', None) or error}") from None
    if len(token) < 16:
        raise UserError(f"the token file {path} must hold a token of at least 16 characters")
    return token_digest(token)


def create_app(runs: Path, registry: str | Path | None = None, host: str = "127.0.0.1",
               token_hash: str | None = None) -> Flask:
    """The web app over the run folders under ``runs`` and the consent registry ``registry`` (URL or SQLite path;
    default as for the CLI). ``host`` is where it will listen: off loopback, ``token_hash`` is required."""
    if not is_loopback(host) and token_hash is None:
        raise UserError(f"refusing to serve on {host} without an access token; pass --token-file FILE (or bind 127.0.0.1)")
    runs = Path(runs).resolve()
    if not runs.is_dir():
        raise UserError(f"runs folder not found: {runs}")
    app = Flask(__name__)
    # Flask escapes only templates named .html, .htm, .xml or .svg; ours are .html.j2, so names, seats, titles and
    # URLs would reach the pages as HTML (a link could run script that withdraws a student).
    app.jinja_env.autoescape = True
    app.config.update(
        SECRET_KEY=secrets.token_bytes(32), SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict",
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES, RUNS=runs, TOKEN_HASH=token_hash,
    )
    app.extensions["registry"] = Registry.open(registry)
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.before_request(_require_token)
    app.before_request(_check_csrf)
    app.after_request(_no_store)

    from engagement.web import consent, live, seats, sessions

    for blueprint in (sessions.blueprint, consent.blueprint, seats.blueprint, live.blueprint):
        app.register_blueprint(blueprint)
    app.add_url_rule("/login", "login", _login, methods=["GET", "POST"])
    for code in (400, 401, 404, 405, 413, 500):  # 500: an unexpected error is logged and shown as a page too
        app.register_error_handler(code, _error_page)
    return app


def file_in(folder: Path, name: str) -> Path | None:
    """The file ``name`` names inside ``folder``, or None: absent, outside the folder, or no valid path at all (a NUL
    byte, a name too long for the file system)."""
    try:
        path = (folder / name).resolve()
        return path if not Path(name).is_absolute() and path.is_relative_to(folder.resolve()) and path.is_file() else None
    except (OSError, ValueError):
        return None


def registry() -> Registry:
    """The app's consent registry."""
    return current_app.extensions["registry"]


def csrf_token() -> str:
    """This browser session's CSRF token, created on first use."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def _check_csrf() -> None:
    if request.endpoint in VIDEO_UPLOAD_ENDPOINTS:  # signed in already (_require_token runs first)
        request.max_content_length = MAX_VIDEO_UPLOAD_BYTES  # before the form is parsed below
    if request.method == "POST":
        sent = request.form.get("csrf_token", "")
        if not sent or not hmac.compare_digest(sent, session.get("csrf", "")):
            abort(400, "the form's CSRF token is missing or stale; reload the page and try again")


def _no_store(response: Response) -> Response:
    if request.endpoint != "static":
        response.headers["Cache-Control"] = "no-store"
    return response


def _authorized(expected: str) -> bool:
    header = request.headers.get("Authorization", "")
    if header.startswith(TOKEN_HEADER):
        return hmac.compare_digest(token_digest(header[len(TOKEN_HEADER):].strip()), expected)
    return session.get("authenticated") is True


def _require_token() -> Any:
    expected = current_app.config["TOKEN_HASH"]
    if expected is None or request.endpoint in OPEN_ENDPOINTS or _authorized(expected):
        return None
    if request.method == "GET":
        return redirect(url_for("login"))
    abort(401)


def _login() -> Any:
    expected = current_app.config["TOKEN_HASH"]
    if request.method == "POST":
        if expected is None or hmac.compare_digest(token_digest(request.form.get("token", "").strip()), expected):
            session["authenticated"] = True
            return redirect(url_for("sessions.index"))
        return render_template("login.html.j2", error="wrong access token"), 401
    return render_template("login.html.j2", error=None)


def _error_page(error: Any) -> Any:
    return render_template("error.html.j2", code=error.code, message=error.description), error.code
