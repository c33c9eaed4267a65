"""The officers' portal and the REST API (issue #5), served on their own HTTPS
listener with mutual TLS: officers sign in with the client certificate that
``kakuin officer add`` issued them.

Modules: ``settings`` ([portal] config), ``tls`` (server certificate, client CA
bundle, the uvicorn protocol that puts the peer certificate into the ASGI scope),
``auth`` (certificate → Actor), ``app`` (composition and the server), ``views``
(HTML), ``api`` (JSON, RFC 7807), ``openapi`` (the document), ``i18n``.
Transport only: every page and route calls RA services with the Actor.
"""
