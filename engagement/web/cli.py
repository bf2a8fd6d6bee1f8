"""``engagement serve``: the web app on a local address (see ``engagement.web.app`` for the security rules)."""

from __future__ import annotations

import argparse
import errno
import logging
import socket
from pathlib import Path

from engagement.arguments import tcp_port
from engagement.errors import UserError

INSTALL_HINT = "the web app needs Flask: pip install 'classroom-engagement[web]'"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``serve``."""
    serve = subparsers.add_parser("serve", help="the instructor's web app: sessions, consent and the live view")
    serve.add_argument("--runs", type=Path, required=True, help="folder holding the run folders to show")
    serve.add_argument("--registry", help="consent registry URL or SQLite file (default: $ENGAGEMENT_REGISTRY, else per user)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1; others need --token-file)")
    serve.add_argument("--port", type=tcp_port, default=8000, help="port (default: 8000; 0: any free port)")
    serve.add_argument("--token-file", type=Path, help="file holding the access token (required off 127.0.0.1)")
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    try:
        from werkzeug.serving import make_server

        from engagement.web.app import create_app, read_token_file
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    token_hash = read_token_file(args.token_file) if args.token_file else None
    app = create_app(args.runs, args.registry, host=args.host, token_hash=token_hash)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no request lines: paths hold student IDs
    listening = listen(args.host, args.port)
    server = make_server(args.host, args.port, app, threaded=True, fd=listening.fileno())
    print(f"serving {args.runs} on http://{args.host}:{server.port}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        listening.close()
    return 0


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; a port in use is a one-line UserError (werkzeug itself exits 1 with
    several lines)."""
    from werkzeug.serving import select_address_family

    listening = socket.socket(select_address_family(host, port), socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind((host, port))
        listening.listen(128)
    except OSError as error:
        listening.close()
        if error.errno == errno.EADDRINUSE:
            raise UserError(f"port {port} on {host} is already in use (another engagement serve?); pick another with --port") from None
        raise UserError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    return listening
