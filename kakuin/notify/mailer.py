"""Sending mail. ``Mailer`` is a Protocol so tests and other transports can swap it."""

from __future__ import annotations

import os
import smtplib
import ssl
from typing import Protocol

from kakuin.errors import ConfigError, KakuinError
from kakuin.ra.settings import MailConfig


class MailError(KakuinError):
    code = "mail"


class Mailer(Protocol):
    def send(self, sender: str, recipient: str, message: bytes) -> None:
        """Hand one RFC 5322 message to the relay; raise MailError on failure."""
        ...


class SMTPMailer:
    """The configured relay (``[mail]``). One connection per flush (``open``/``close``)."""

    def __init__(self, config: MailConfig, env: dict[str, str] | None = None) -> None:
        self.config = config
        self._env = dict(os.environ if env is None else env)
        self._smtp: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        c = self.config
        try:
            smtp = smtplib.SMTP(c.host, c.port, timeout=c.timeout_seconds)
            if c.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if c.username:
                password = self._env.get(c.password_env)
                if not password:
                    raise ConfigError(f"mail.username is set: put the SMTP password in ${c.password_env}")
                smtp.login(c.username, password)
        except (OSError, smtplib.SMTPException) as exc:
            raise MailError(f"cannot reach the mail relay {c.host}:{c.port}: {exc}") from None
        return smtp

    def send(self, sender: str, recipient: str, message: bytes) -> None:
        if self._smtp is None:
            self._smtp = self._connect()
        try:
            self._smtp.sendmail(sender, [recipient], message)
        except smtplib.SMTPRecipientsRefused as exc:
            raise MailError(f"the relay refused {recipient}: {exc.recipients}") from None
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            raise MailError(f"sending to {recipient} failed: {exc}") from None

    def close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (OSError, smtplib.SMTPException):
                pass
            self._smtp = None
