"""The instructor's web app (``engagement serve``): sessions, consent and the live view, server-rendered with Flask.

``engagement.web.app.create_app`` builds the app; this package imports nothing from Flask itself, so that the
CLI can say how to install it when it is missing.
"""
