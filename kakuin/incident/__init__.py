"""Incident response (issue #7): find every certificate an event affects, get
them replaced, revoke on schedule, and let anyone check a live server.

- ``report``: select affected certificates by rule and report them (per
  institution, officer, subscriber; CSV, JSON, HTML via ``html``);
- ``campaign``: notify, set ARI, track progress, remind, execute the deadline;
- ``check``: what a server sends and what to do about it;
- ``watch``: certificates nearing expiry with no successor;
- ``cli``: ``kakuin incident …``, ``kakuin check``, ``kakuin watch expiry``.

The CA side (generations, cross-certificates, CA revocation, key destruction
and the signed ceremony log) is in ``kakuin.ca.rotation`` and ``kakuin.ca.ceremony``.
"""
