"""The ACME service: accounts, nonces, orders and their state machine.

Transactions open here; routes call one method and render what it returns.
Challenge validation and finalization (which wait on the network) are in
``kakuin.acme.orders``; renewal information in ``kakuin.acme.ari``.

Choices where RFC 8555 leaves one, as Boulder makes them: valid authorizations
of an account are reused for 30 days; pending authorizations and orders expire
after 7 days; one token per authorization shared by its challenges; wildcards
only by dns-01; a deactivated account can do nothing.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from kakuin.acme import jws as J
from kakuin.acme.eab import EABService
from kakuin.acme.errors import (
    AccountDeactivated,
    AccountDoesNotExist,
    BadNonce,
    BadPublicKey,
    Conflict,
    ExternalAccountRequired,
    InvalidContact,
    Malformed,
    UnsupportedContact,
    UnsupportedIdentifier,
)
from kakuin.acme.limits import LimitQuery, Limits, names_hash
from kakuin.acme.models import (
    Account,
    ACMEAccount,
    ACMEAuthorization,
    Authorization,
    Challenge,
    Order,
)
from kakuin.acme.nonces import MAX_SKEW, NonceMint
from kakuin.acme.repos import AccountRepo, ACMELedger, OrderRepo
from kakuin.acme.urls import URLs
from kakuin.clock import Clock, as_utc
from kakuin.config import Config
from kakuin.errors import NotFound, Unauthorized, ValidityError
from kakuin.policy import names as name_rules
from kakuin.policy.validity import dcv_reuse_days
from kakuin.store.db import Database

NONCE_LIFETIME = dt.timedelta(hours=1)
PENDING_AUTHZ_LIFETIME = dt.timedelta(days=7)  # Boulder: pendingAuthorizationLifetimeDays
VALID_AUTHZ_LIFETIME = dt.timedelta(days=30)  # Boulder: authorizationLifetimeDays
ORDER_LIFETIME = dt.timedelta(days=7)  # Boulder: orderLifetime
MAX_NAMES = 100  # Boulder's maxNames; BR sets no limit
MAX_CONTACTS = 10
CHALLENGES = ("http-01", "dns-01", "tls-alpn-01")
_MAILBOX = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=^_`{|}~-]{1,64}@[a-z0-9.-]{1,253}$")


@dataclass(frozen=True, slots=True)
class Authenticated:
    """A request whose JWS verified and whose nonce was redeemed."""

    jws: J.ParsedJWS
    jwk: dict[str, Any]
    key: J.AccountKey
    account: Account | None  # None for jwk-signed requests
    next_nonce: str | None = None  # issued in the same transaction, for the response

    def payload(self) -> dict[str, Any]:
        return self.jws.json()

    @property
    def acct(self) -> Account:
        assert self.account is not None
        return self.account


@dataclass(frozen=True, slots=True)
class OrderView:
    order: Order
    authzs: list[Authorization]
    status: str


def authz_status(a: Authorization, now: dt.datetime) -> str:
    if a.status in ("pending", "valid") and as_utc(a.expires) <= now:
        return "expired"
    # BR 3.2.2.4: a validation is relied on for dcv_reuse_days before issuance at
    # most; the schedule shortens it over time (10 days from 2029-03-15), so a
    # valid authorization can be too old at ``now`` before it expires.
    if (a.status == "valid" and a.validated_at is not None
            and as_utc(a.validated_at) <= now - dt.timedelta(days=dcv_reuse_days(now))):
        return "expired"
    return a.status


def order_status(o: Order, authzs: list[Authorization], now: dt.datetime) -> str:
    """RFC 8555 §7.1.6: stored for processing/valid/invalid, derived otherwise. An
    order left "processing" past its expiry (the process died while issuing) is
    invalid, as Boulder's statusForOrder has it, instead of pending forever."""
    if o.status == "processing" and as_utc(o.expires) <= now:
        return "invalid"
    if o.status in ("processing", "valid", "invalid"):
        return o.status
    if as_utc(o.expires) <= now:
        return "invalid"
    states = [authz_status(a, now) for a in authzs]
    if any(s in ("invalid", "deactivated", "expired", "revoked") for s in states):
        return "invalid"
    return "ready" if states and all(s == "valid" for s in states) else "pending"


def order_statuses(s: Session, orders: Sequence[Any], now: dt.datetime) -> dict[int, str]:
    """``order_status`` of ORM order rows, their authorizations read in one query."""
    wanted = {i for o in orders for i in o.authz_ids}
    authzs = {
        a.id: a for a in s.scalars(select(ACMEAuthorization).where(ACMEAuthorization.id.in_(wanted)))
    } if wanted else {}
    return {o.id: order_status(o, [authzs[i] for i in o.authz_ids if i in authzs], now) for o in orders}


def key_authorization(token: str, jwk: dict[str, Any]) -> str:
    """RFC 8555 §8.1: token || '.' || base64url(JWK thumbprint)."""
    return f"{token}.{J.thumbprint(jwk)}"


class ACMEService:
    def __init__(self, config: Config, db: Database, clock: Clock, eab: EABService) -> None:
        self.config = config
        self.db = db
        self.clock = clock
        self.eab = eab
        # (notAfter, now) → None or ValidityError: whether issuance under the ACME
        # profile could honour an order's notAfter (set by kakuin.acme.ACME).
        self.check_not_after: Callable[[dt.datetime, dt.datetime], None] | None = None
        self.urls = URLs(config.server.base_url)
        self.ledger = ACMELedger(db.engine, db.autocommit)
        # Parsed account keys by (account id, RFC 7638 thumbprint). Only parsing
        # is cached: every request reads the account row, and a key change (here
        # or in another process) changes the thumbprint, so a stale key is never used.
        self._keys: dict[tuple[int, str], J.AccountKey] = {}
        self.nonces = NonceMint(eab.keyring.nonce_key, NONCE_LIFETIME)
        self.limits = Limits.from_config(config.acme.limits)
        # EAB credential id → exempt from the limits; a credential's kid never changes.
        self._exempt: dict[int, bool] = {}

    # -- nonces (RFC 8555 §6.5, kakuin.acme.nonces) --------------------------------
    def new_nonce(self) -> str:
        return self.nonces.mint(self.clock.now())

    def redeem_nonce(self, nonce: str) -> bool:
        """True once, for the first request (in any process) that presents a
        nonce this installation minted within its lifetime."""
        now = self.clock.now()
        issued = self.nonces.issued(nonce, now)
        if issued is None:
            return False
        # The row keeps the mint time; a row goes only when no process within the
        # tolerated skew could still take its nonce for a fresh one (nonces.py).
        purge = now - NONCE_LIFETIME - 2 * MAX_SKEW if secrets.randbelow(500) == 0 else None
        return self.ledger.redeem_nonce(nonce, issued, purge)

    def _refuse_blocked(self, key: J.AccountKey) -> None:
        """A key reported compromised signs for no account either (Boulder's goodkey
        consults the blocklist for account keys too)."""
        from kakuin.policy.keys import spki_sha256
        from kakuin.store.repos import BlockedKeyRepo

        with self.db.session() as s:
            if BlockedKeyRepo(s).is_blocked(spki_sha256(key)):
                raise BadPublicKey("this key was reported compromised and is blocked; generate a new key pair")

    def _account_key(self, account: Account) -> J.AccountKey:
        ck = (account.id, account.thumbprint)
        key = self._keys.get(ck)
        if key is None:
            key = J.key_from_jwk(account.jwk)
            if len(self._keys) >= 10_000:
                self._keys.clear()
            self._keys[ck] = key
        return key

    # -- authentication (RFC 8555 §6.2-6.4) -------------------------------------
    def authenticate(self, body: bytes, url: str, *, use: str = "kid") -> Authenticated:
        """Verify a POST: use is "kid" (account requests), "jwk" (newAccount) or
        "any" (revokeCert). Signature first, then the nonce, as Boulder does, so a
        forged request cannot burn a nonce."""
        jws = J.parse(body)
        J.check_header(jws, url=url)
        h = jws.header
        account: Account | None = None
        if "kid" in h:
            if use == "jwk":
                raise Malformed("this request must be signed with a jwk, not a kid")
            account_id = self.urls.account_id(str(h["kid"]))
            account = self.ledger.account(account_id) if account_id is not None else None
            if account is None:
                raise AccountDoesNotExist(f"no account {h['kid']!r}")
            jwk = account.jwk
            key = self._account_key(account)
        else:
            if use == "kid":
                raise Malformed("this request must be signed with the account's kid, not a jwk")
            jwk = h["jwk"]
            key = J.key_from_jwk(jwk)
            jwk = J.public_jwk(jwk)
        J.verify(jws, key)
        if not self.redeem_nonce(str(h["nonce"])):
            raise BadNonce("the nonce is unknown, expired or already used")
        fresh = self.new_nonce()
        if account is not None and account.status != "valid":
            raise AccountDeactivated(f"account is {account.status}")
        return Authenticated(jws, jwk, key, account, fresh)

    # -- accounts (RFC 8555 §7.3) -----------------------------------------------
    def check_contacts(self, contact: Any) -> list[str]:
        if not isinstance(contact, list) or not all(isinstance(c, str) for c in contact):
            raise Malformed("contact must be a list of strings")
        if len(contact) > MAX_CONTACTS:
            raise InvalidContact(f"at most {MAX_CONTACTS} contacts")
        out = []
        for c in contact:
            if not c.startswith("mailto:"):
                raise UnsupportedContact(f"contact {c!r}: only mailto: URIs are supported")
            local, at, domain = c[len("mailto:") :].rpartition("@")
            # A domain is case-insensitive: Example.AC.JP is kept as example.ac.jp.
            addr = f"{local}{at}{domain.lower()}"
            if "?" in addr or "," in addr or not _MAILBOX.fullmatch(addr):
                raise InvalidContact(f"contact {c!r} is not a valid e-mail address")
            try:
                name_rules.check_dns_name(domain.lower())
            except Exception:
                raise InvalidContact(f"contact {c!r} has an invalid domain") from None
            out.append(f"mailto:{addr}")
        return out

    def new_account(self, req: Authenticated) -> tuple[ACMEAccount, bool]:
        """(account, created). An existing key returns its account (RFC 8555 §7.3.1)."""
        p = req.payload()
        thumb = J.thumbprint(req.jwk)
        with self.db.session() as s:
            existing = AccountRepo(s).by_thumbprint(thumb)
        if existing is not None:
            if existing.status != "valid":
                raise AccountDeactivated(f"the account of this key is {existing.status}")
            return existing, False
        if p.get("onlyReturnExisting") is True:
            raise AccountDoesNotExist("no account exists with this key")
        self._refuse_blocked(req.key)
        contact = self.check_contacts(p.get("contact", []))
        if self.config.acme.terms_of_service and p.get("termsOfServiceAgreed") is not True:
            raise Malformed("you must agree to the terms of service (termsOfServiceAgreed)")
        binding = p.get("externalAccountBinding")
        if binding is None and self.config.acme.external_account_required:
            raise ExternalAccountRequired(
                "this server requires an external account binding (EAB): "
                "ask your registration officer for one"
            )
        now = self.clock.now()
        with self.db.session() as s:
            account = ACMEAccount(
                thumbprint=thumb,
                jwk=req.jwk,
                contact=contact,
                status="valid",
                tos_agreed=bool(p.get("termsOfServiceAgreed")),
                created_at=now,
            )
            if binding is not None:
                found: dict[str, Any] = {}

                def hmac_key_for(kid: str) -> bytes:
                    cred, key = self.eab.usable(s, kid)
                    found["cred"] = cred
                    return key

                J.verify_eab(
                    binding, url=self.urls.new_account, outer_jwk=req.jwk, hmac_key_for=hmac_key_for
                )
                account.eab_credential_id = found["cred"].id
                account.institution_id = found["cred"].institution_id
            if not AccountRepo(s).add(account):
                # A concurrent request bound the same key or credential: the database decided.
                if AccountRepo(s).by_thumbprint(thumb) is not None:
                    return AccountRepo(s).by_thumbprint(thumb), False  # type: ignore[return-value]
                raise Unauthorized("the external account binding key identifier is already used")
        return account, True

    def update_account(self, req: Authenticated, account_id: int) -> ACMEAccount | Account:
        if req.acct.id != account_id:
            raise Unauthorized("the kid does not name this account")
        if req.jws.is_post_as_get:
            return req.acct
        p = req.payload()
        values: dict[str, Any] = {}
        if "contact" in p:
            values["contact"] = self.check_contacts(p["contact"])
        # RFC 8555 §7.3.2: any other status (and orders, termsOfServiceAgreed,
        # unknown fields) is ignored; §7.3.6: "deactivated" deactivates.
        if p.get("status") == "deactivated":
            values["status"] = "deactivated"
        with self.db.session() as s:
            acct = AccountRepo(s).by_id(account_id)
            assert acct is not None
            for k, v in values.items():
                setattr(acct, k, v)
            if values.get("status") == "deactivated":
                # §7.3.6: the server SHOULD cancel pending operations. Its pending
                # authorizations are deactivated, which makes its pending orders
                # invalid (order_status); issued certificates stay as they are.
                s.execute(
                    update(ACMEAuthorization)
                    .where(ACMEAuthorization.account_id == account_id, ACMEAuthorization.status == "pending")
                    .values(status="deactivated")
                )
        return acct

    def key_change(self, req: Authenticated) -> ACMEAccount:
        """RFC 8555 §7.3.5: the inner JWS, signed by the new key, names the account
        and the old key; the new key must not belong to another account."""
        inner = J.parse(req.jws.payload)
        h = inner.header
        if h.get("alg") not in J.ALGORITHMS:
            raise J.BadSignatureAlgorithm(f"inner JWS algorithm {h.get('alg')!r} is not supported")
        if "jwk" not in h or "kid" in h:
            raise Malformed("the inner JWS must carry the new key as jwk")
        if "nonce" in h:
            raise Malformed("the inner JWS must not carry a nonce")  # RFC 8555 §7.3.5
        if h.get("url") != self.urls.key_change:
            raise Malformed("the inner JWS url must be the keyChange URL")
        new_key = J.key_from_jwk(h["jwk"])
        J.verify(inner, new_key)
        self._refuse_blocked(new_key)
        p = inner.json()
        if p.get("account") != self.urls.account(req.acct.id):
            raise Malformed("the inner payload's account is not the signing account")
        if not isinstance(p.get("oldKey"), dict) or J.public_jwk(p["oldKey"]) != J.public_jwk(
            req.acct.jwk
        ):
            raise Malformed("oldKey is not the account's current key")
        new_jwk = J.public_jwk(h["jwk"])
        thumb = J.thumbprint(new_jwk)
        with self.db.session() as s:
            other = AccountRepo(s).by_thumbprint(thumb)
            if other is not None:
                raise Conflict(
                    "the new key is already in use", location=self.urls.account(other.id)
                )
            acct = AccountRepo(s).by_id(req.acct.id)
            assert acct is not None
            acct.jwk, acct.thumbprint = new_jwk, thumb
        return acct

    # -- orders (RFC 8555 §7.4) ---------------------------------------------------
    def parse_identifiers(self, raw: Any) -> list[str]:
        if not isinstance(raw, list) or not raw:
            raise Malformed("identifiers must be a non-empty list")
        names: list[str] = []
        for ident in raw:
            if not isinstance(ident, dict) or not isinstance(ident.get("value"), str):
                raise Malformed("each identifier needs a type and a value")
            if ident.get("type") != "dns":
                raise UnsupportedIdentifier(
                    f"identifier type {ident.get('type')!r} is not supported"
                )
            name = ident["value"].lower()
            name_rules.check_dns_name(name)
            if name not in names:
                names.append(name)
        if len(names) > MAX_NAMES:
            raise Malformed(f"at most {MAX_NAMES} identifiers per order")
        return names

    def _limit_query(
        self, acct: Account, bases: list[tuple[str, bool]], names: list[str], renewal: bool, now: dt.datetime
    ) -> LimitQuery | None:
        """What the newOrder transaction counts (kakuin.acme.limits); None when no
        limit applies to this account."""
        lim = self.limits
        if not lim.any:
            return None
        cred = acct.eab_credential_id
        if lim.exempt_kids and cred is not None:
            if cred not in self._exempt:
                self._exempt[cred] = self.ledger.credential_kid(cred) in lim.exempt_kids
            if self._exempt[cred]:
                return None
        return LimitQuery(
            limits=lim,
            account_id=acct.id,
            identifiers=tuple(dict.fromkeys(b for b, _ in bases)),
            # A renewal (RFC 9773 "replaces") counts too, as at Let's Encrypt:
            # each new certificate may itself be replaced, so an exemption would
            # let a client loop. Boulder exempts renewals only from its per-account
            # order limit (and per-domain, which kakuin does not have): renewal=True.
            names_hash=names_hash(names),
            now=now,
            order_lifetime=ORDER_LIFETIME,
            renewal=renewal,
        )

    def _timestamp(self, p: dict[str, Any], key: str) -> dt.datetime | None:
        v = p.get(key)
        if v is None:
            return None
        try:
            return as_utc(dt.datetime.fromisoformat(str(v).replace("Z", "+00:00")))
        except ValueError:
            raise Malformed(f"{key} is not an RFC 3339 timestamp") from None

    def new_order(self, req: Authenticated) -> OrderView:
        from kakuin.acme.ari import check_not_replaced, check_replaces

        p = req.payload()
        names = self.parse_identifiers(p.get("identifiers"))
        now = self.clock.now()
        not_before, not_after = self._timestamp(p, "notBefore"), self._timestamp(p, "notAfter")
        # RFC 8555 §7.4: a certificate MUST NOT differ from what was requested. A
        # certificate here is valid from its issuance, so no notBefore can be
        # honoured (Boulder refuses both fields); a notAfter is, to the second.
        if not_before is not None:
            raise Malformed("notBefore is not supported: a certificate is valid from its issuance")
        if not_after is not None:
            if not_after <= now + dt.timedelta(days=1):
                raise Malformed("notAfter must be at least a day in the future")
            if self.check_not_after is not None:
                try:
                    self.check_not_after(not_after, now)
                except ValidityError as exc:
                    raise Malformed(str(exc)) from None
        acct = req.acct
        allowed = self.ledger.allowed_domains(acct.eab_credential_id, acct.institution_id)
        if allowed is not None:
            for n in names:
                name_rules.check_within(n, allowed)
        replaces = p.get("replaces")
        recheck: Callable[[Connection], None] | None = None
        if replaces is not None:
            with self.db.session() as s:
                check_replaces(s, acct.id, str(replaces), names, now)

            def not_replaced(conn: Connection) -> None:
                # Again under the account's lock, in the transaction that inserts:
                # two replacements of one certificate cannot both pass.
                with Session(bind=conn) as s:
                    check_not_replaced(s, str(replaces), now)

            recheck = not_replaced
        bases = [(name_rules.base_domain_of(n), n.startswith("*.")) for n in names]
        order, authzs = self.ledger.new_order(
            acct.id,
            bases,
            {
                "status": "pending",
                "identifiers": [{"type": "dns", "value": n} for n in names],
                "not_before": not_before,
                "not_after": not_after,
                "error": None,
                "certificate_serial": None,
                "replaces": str(replaces) if replaces is not None else None,
                "created_at": now,
                "names_hash": names_hash(names),
            },
            # RFC 8555 §7.1.3: wildcards only by dns-01.
            challenge_types=lambda wildcard: ("dns-01",) if wildcard else CHALLENGES,
            token=lambda: secrets.token_urlsafe(32),
            now=now,
            pending_lifetime=PENDING_AUTHZ_LIFETIME,
            order_lifetime=ORDER_LIFETIME,
            limits=self._limit_query(acct, bases, names, replaces is not None, now),
            recheck=recheck,
        )
        return OrderView(order, authzs, order_status(order, authzs, now))

    def order(self, account_id: int, order_id: int) -> OrderView:
        found = self.ledger.order(order_id)
        if found is None or found[0].account_id != account_id:
            raise NotFound("no such order")  # Boulder: another account's order is "not found"
        o, authzs = found
        return OrderView(o, authzs, order_status(o, authzs, self.clock.now()))

    def orders(
        self, req: Authenticated, account_id: int, before: int | None, limit: int = 100
    ) -> tuple[list[int], int | None]:
        if req.acct.id != account_id:
            raise Unauthorized("the kid does not name this account")
        with self.db.session() as s:
            now = self.clock.now()
            rows = OrderRepo(s).of_account(account_id, before_id=before, limit=limit + 1, now=now)
            # §7.1.2.1: invalid orders SHOULD NOT be listed; an order whose
            # authorization failed is invalid without being stored so.
            statuses = order_statuses(s, rows[:limit], now)
            ids = [o.id for o in rows[:limit] if statuses[o.id] != "invalid"]
        return ids, (rows[limit - 1].id if len(rows) > limit else None)

    def authz(self, account_id: int, authz_id: int) -> tuple[Authorization, list[Challenge]]:
        found = self.ledger.authz(authz_id)
        if found is None or found[0].account_id != account_id:
            raise NotFound("no such authorization")
        return found

    def deactivate_authz(self, req: Authenticated, authz_id: int) -> None:
        """RFC 8555 §7.5.2: a client may deactivate a pending or valid authorization."""
        p = req.payload()
        if p.get("status") != "deactivated":
            raise Malformed('the only status a client may set is "deactivated"')
        a, _ = self.authz(req.acct.id, authz_id)
        if a.status not in ("pending", "valid"):
            raise Malformed(f"an authorization that is {a.status} cannot be deactivated")
        self.ledger.set_authz(a.id, status="deactivated")

    def challenge(self, account_id: int, challenge_id: int) -> tuple[Challenge, Authorization]:
        found = self.ledger.challenge(challenge_id)
        if found is None or found[1].account_id != account_id:
            raise NotFound("no such challenge")
        return found
