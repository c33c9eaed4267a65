"""Notifications: mails composed in Japanese with English alongside, queued in
an outbox table (idempotent per recipient, kind and key) and sent through an
SMTP relay by ``kakuin mail send``. Scheduled notices are merged into one
digest per recipient per day and split when a mail would exceed the size limit.

``mailer``: the Mailer protocol and the SMTP implementation; ``outbox``:
enqueue and flush; ``compose``: building RFC 5322 messages and splitting digests.
"""
