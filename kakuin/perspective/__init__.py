"""Remote network perspectives for Multi-Perspective Issuance Corroboration (issue #6).

A perspective is a small authenticated HTTP service (``service.py``) that runs one
check on request — http-01, dns-01, tls-alpn-01 or CAA — with kakuin's own VA code
and its own resolver and source address, and returns what it observed. The CA
reaches it through ``client.py``; both sides sign with ``auth.py`` (HMAC-SHA256
over method, path, timestamp, nonce and body; responses are signed too). The
``[mpic]`` settings are in ``settings.py``; the quorum and the ``CorroboratingVA``
are in ``kakuin.va.mpic``; evidence is in ``kakuin.va.evidence``.

This module imports nothing heavy: ``kakuin.config`` imports ``settings``.
"""
