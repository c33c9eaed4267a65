"""The parts of the order state machine that wait on the network: challenge
validation (RFC 8555 §7.5.1, §8) and finalization (§7.4) with CAA, plus the
certificate download and revokeCert (§7.6).

Finalization checks everything that can refuse (CSR, names, key, CAA for every
name) before it claims the order; a refusal changes nothing. The claim is a
conditional UPDATE (pending → processing), so of two finalize requests only
one issues, across processes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
from dataclasses import replace
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from kakuin.acme import jws as J
from kakuin.acme.errors import AlreadyRevoked, BadRevocationReason, Malformed, OrderNotReady
from kakuin.acme.models import Account, Authorization, Challenge
from kakuin.acme.repos import AuthzRepo, OrderRepo
from kakuin.acme.service import (
    VALID_AUTHZ_LIFETIME,
    ACMEService,
    Authenticated,
    OrderView,
    key_authorization,
    order_status,
)
from kakuin.ca.csr import csr_san
from kakuin.ca.issuer import IssuanceService, IssueRequest, csr_names, parse_csr
from kakuin.clock import as_utc
from kakuin.errors import (
    AlreadyRevokedError,
    BadCSR,
    CAAError,
    IssuanceError,
    KakuinError,
    NotFound,
    Unauthorized,
)
from kakuin.http import database_work_inline, run_database_work
from kakuin.policy.keys import check_key
from kakuin.policy.validity import dcv_reuse_days
from kakuin.ra.revocation import RevocationService
from kakuin.store.models import Certificate
from kakuin.store.repos import CertificateRepo
from kakuin.va import ValidationAuthority, ValidationRecord

log = logging.getLogger(__name__)
ACME_NS = "urn:ietf:params:acme:error:"
# RFC 8555 §7.6 / BR 7.2.2: the reasons a subscriber may give (Boulder's list).
SUBSCRIBER_REASONS = {0, 1, 3, 4, 5}


def record_json(r: ValidationRecord) -> dict[str, Any]:
    d = dataclasses.asdict(r)
    d["at"] = r.at.isoformat()
    return d


class OrderFlow:
    def __init__(
        self,
        acme: ACMEService,
        va: ValidationAuthority,
        issuance: IssuanceService,
        revocation: RevocationService,
    ) -> None:
        self.acme = acme
        self.va = va
        self.issuance = issuance
        self.revocation = revocation
        self.db = acme.db
        self.clock = acme.clock
        self._tasks: set[asyncio.Task[None]] = set()
        # Database work on the event loop or in a thread (DatabaseConfig.work);
        # issuance also signs, so it stays in a thread when the CA keys are on
        # a PKCS#11 token, whose calls may wait on the device.
        self.inline_db = database_work_inline(acme.config)
        self.inline_issue = self.inline_db and acme.config.keys.backend == "file"

    # -- challenges ------------------------------------------------------------
    def respond(self, req: Authenticated, challenge_id: int) -> tuple[bool, Challenge, Authorization]:
        """The client says it is ready (RFC 8555 §7.5.1). Returns whether this
        request started the validation (the caller then runs ``validate``) and the
        challenge as it now stands, with its authorization."""
        c, a = self.acme.challenge(req.acct.id, challenge_id)
        if req.jws.is_post_as_get:
            return False, c, a
        if a.status != "pending" or as_utc(a.expires) <= self.clock.now():
            return False, c, a
        if not self.acme.ledger.claim_challenge(c.id, a.id):
            return False, *self.acme.challenge(req.acct.id, challenge_id)
        return True, replace(c, status="processing"), a

    def start_validation(self, account: Account, c: Challenge, a: Authorization) -> asyncio.Task[Challenge]:
        """Validate in a task of its own: it finishes (and is recorded) even when the
        request that started it has long been answered."""
        task = asyncio.get_running_loop().create_task(self.validate(account, c, a))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def validate(self, account: Account, c: Challenge, a: Authorization) -> Challenge:
        """Run the VA for a claimed ("processing") challenge and record the outcome;
        returns the challenge as recorded."""
        keyauth = key_authorization(c.token, account.jwk)
        try:
            if c.type == "http-01":
                rec = await self.va.validate_http01(a.identifier, c.token, keyauth)
            elif c.type == "dns-01":
                rec = await self.va.validate_dns01(a.identifier, keyauth)
            else:
                rec = await self.va.validate_tlsalpn01(a.identifier, keyauth)
        except Exception as exc:  # the VA should not raise; never leave "processing"
            log.exception("validation of challenge %s failed", c.id)
            rec = self.va.record(
                c.type,
                a.identifier,
                ok=False,
                observed={},
                error=f"internal error during validation ({type(exc).__name__})",
                problem="serverInternal",
            )
        return await run_database_work(self.inline_db, self._record, c, a.id, rec)

    def _record(self, c: Challenge, authz_id: int, rec: ValidationRecord) -> Challenge:
        now = self.clock.now()
        ledger = self.acme.ledger
        if rec.ok:
            fields: dict[str, Any] = {"status": "valid", "validated_at": now, "record": record_json(rec)}
            # Valid for 30 days (Boulder), never longer than the BR lets a
            # validation be reused (dcv_reuse_days: 10 days from 2029-03-15).
            lifetime = min(VALID_AUTHZ_LIFETIME, dt.timedelta(days=dcv_reuse_days(now)))
            ledger.record_validation(
                c.id,
                authz_id,
                fields,
                {"status": "valid", "validated_at": now, "expires": now + lifetime},
            )
        else:
            err = {
                "type": ACME_NS + (rec.problem or "unauthorized"),
                "detail": rec.error or "validation failed",
                "status": 403,
            }
            fields = {"status": "invalid", "error": err, "record": record_json(rec)}
            # The authorization's validated_at is when the validation was decided,
            # either way: the failed-validations limit counts from it (kakuin.acme.limits).
            ledger.record_validation(c.id, authz_id, fields, {"status": "invalid", "validated_at": now})
        return replace(c, **fields)

    # -- finalization -------------------------------------------------------------
    async def finalize(self, req: Authenticated, order_id: int) -> OrderView:
        view, key, cns = await run_database_work(self.inline_db, self.check_finalize, req, order_id)
        return await self.complete_finalize(req.acct, view, key, cns)

    def check_finalize(self, req: Authenticated, order_id: int) -> tuple[OrderView, Any, list[str]]:
        """Everything that can refuse before CAA, without writing: the order is
        ready, the CSR names exactly its identifiers, its key is acceptable."""
        view = self.acme.order(req.acct.id, order_id)
        if view.status != "ready":
            raise OrderNotReady(f"order is {view.status}, not ready; it cannot be finalized")
        p = req.payload()
        csr = parse_csr(J.b64d(p.get("csr"), "csr"))
        names = [i["value"] for i in view.order.identifiers]
        dns, emails = csr_names(csr)
        others = sorted({type(g).__name__ for g in csr_san(csr) if not isinstance(g, x509.DNSName)})
        if others:
            # Boulder (csr.VerifyCSR) refuses these too: a certificate without them
            # would not be the one requested (RFC 8555 §7.4).
            raise BadCSR(f"the CSR may request DNS names only, not {', '.join(others)}")
        cns = [
            str(a.value).lower() for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        ]
        requested = {n.lower() for n in dns} | set(cns)
        if emails or requested != set(names):
            raise BadCSR("the CSR's names must be exactly the order's identifiers")
        key = csr.public_key()
        self._check_key(req, key)
        return view, key, cns

    async def complete_finalize(
        self, account: Account, view: OrderView, key: Any, cns: list[str]
    ) -> OrderView:
        """CAA for every name, then claim the order and issue (one database-work step)."""
        caa, valid = await self._check_caa(account, view)

        def job() -> OrderView:
            with self.acme.ledger.pinned():  # one pooled connection for the ACME rows
                return self._claim_and_issue(account, view, key, cns, caa, valid)

        return await run_database_work(self.inline_issue, job)

    def _claim_and_issue(
        self,
        account: Account,
        view: OrderView,
        key: Any,
        cns: list[str],
        caa: list[ValidationRecord],
        valid: list[Challenge],
    ) -> OrderView:
        order_id = view.order.id
        # Read again after the CAA lookups: an authorization deactivated or expired
        # meanwhile, or the order's expiry passing, stops the issuance here.
        now = self.clock.now()
        found = self.acme.ledger.order(order_id)
        if found is None or order_status(found[0], found[1], now) != "ready":
            raise OrderNotReady("the order is no longer ready: an authorization or the order changed")
        if not self._claim(order_id):
            raise OrderNotReady("the order is already being finalized")
        try:
            issued = self._issue(account, view, key, cns)
        except KakuinError as exc:
            from kakuin.acme.problems import problem_for

            failure: KakuinError = exc
            if isinstance(exc, NotFound):
                # After the claim, "not found" is the CA's (no active intermediate,
                # say), not the client's: serverInternal, as Boulder reports it.
                failure = IssuanceError(f"issuance failed: {exc.message}")
            prob = problem_for(failure)
            self._set_order(
                order_id,
                status="invalid",
                error={"type": prob.type, "detail": prob.detail, "status": prob.status},
            )
            if failure is not exc:
                raise failure from exc
            raise
        except BaseException:
            self._set_order(
                order_id,
                status="invalid",
                error={
                    "type": ACME_NS + "serverInternal",
                    "detail": "issuance failed",
                    "status": 500,
                },
            )
            raise
        self._set_order(order_id, status="valid", certificate_serial=issued)
        try:
            self._link_evidence(view, caa, valid, issued)
        except Exception:  # issued already; the evidence rows stay, unlinked: say so loudly
            log.exception("linking validation evidence to %s failed", issued)
        # What was just written, without reading it back: the stored status is
        # final ("valid") and the authorizations did not change.
        return OrderView(replace(view.order, status="valid", certificate_serial=issued), view.authzs, "valid")

    def _check_key(self, req: Authenticated, key: Any) -> None:
        spki = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        account_spki = req.key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        if spki == account_spki:
            raise BadCSR("the CSR's key must not be the account key")  # Boulder: same
        profile = self.issuance.profile(self.acme.config.acme.profile)
        check_key(key, profile.key_rules, self.issuance.ledger.is_blocked)

    async def _check_caa(
        self, account: Account, view: OrderView
    ) -> tuple[list[ValidationRecord], list[Challenge]]:
        """CAA for every name before every issuance (BR 3.2.2.8; RFC 8659); the
        records and the order's valid challenges (whose evidence is linked to the
        certificate)."""
        valid = [c for c in self.acme.ledger.challenges([a.id for a in view.authzs]) if c.status == "valid"]
        methods = {c.authz_id: c.type for c in valid}
        uri = self.acme.urls.account(account.id)
        checks = [
            self.va.check_caa(
                a.identifier, account_uri=uri, method=methods.get(a.id), wildcard=a.wildcard
            )
            for a in view.authzs
        ]
        records = await asyncio.gather(*checks)
        for rec in records:
            if not rec.ok:
                raise CAAError(
                    f"CAA forbids issuance for {rec.domain}: {rec.error or 'refused'}",
                    rule="caa",
                    field=rec.domain,
                )
        return list(records), valid

    def _link_evidence(self, view: OrderView, caa: list[ValidationRecord], valid: list[Challenge],
                       serial: str) -> None:
        """Tie the validation evidence (MPIC, issue #6) of the order's challenges and
        CAA checks to the certificate, for audit (kakuin show SERIAL)."""
        from kakuin.va.evidence import check_ids_of, link_certificate

        items = [(cid, c.authz_id) for c in valid for cid in check_ids_of([c.record])]
        link_certificate(self.db, serial, [*items, *check_ids_of(caa)], order_id=view.order.id,
                         now=self.clock.now())

    def _claim(self, order_id: int) -> bool:
        return self.acme.ledger.claim_order(order_id)

    def _set_order(self, order_id: int, **values: Any) -> None:
        self.acme.ledger.set_order(order_id, **values)

    def _issue(self, account: Account, view: OrderView, key: Any, cns: list[str]) -> str:
        names = [i["value"] for i in view.order.identifiers]
        if cns and cns[0] in names:  # the CSR's CN first: it becomes the subject CN
            names.remove(cns[0])
            names.insert(0, cns[0])
        # The order's notAfter exactly (RFC 8555 §7.4: nothing other than what was
        # requested); the pipeline refuses it if issuance now cannot honour it.
        not_after = as_utc(view.order.not_after) if view.order.not_after is not None else None
        institution = None
        if account.institution_id is not None:
            institution = self.acme.ledger.institution_name(account.institution_id)
        issued = self.issuance.issue(
            IssueRequest(
                profile=self.acme.config.acme.profile,
                public_key=key,
                subject=x509.Name([]),
                dns_names=tuple(names),
                institution=institution,
                requested_not_after=not_after,
                requested_by=f"acme:{account.id}",
            )
        )
        return issued.serial

    # -- revocation ------------------------------------------------------------------
    def revoke(self, req: Authenticated) -> None:
        """RFC 8555 §7.6: by the account that ordered it (or that holds valid
        authorizations for all its names), or by the certificate's own key."""
        p = req.payload()
        try:
            cert = x509.load_der_x509_certificate(J.b64d(p.get("certificate"), "certificate"))
        except ValueError:
            raise Malformed("certificate is not a DER X.509 certificate") from None
        serial = format(cert.serial_number, "x")
        reason = p.get("reason", 0)
        # JSON true is a Python int (1): a reason must be a number, not a boolean.
        if not isinstance(reason, int) or isinstance(reason, bool) or reason not in SUBSCRIBER_REASONS:
            raise BadRevocationReason(f"reason {reason!r} is not allowed (0, 1, 3, 4, 5)")
        with self.db.session() as s:
            try:
                row: Certificate = CertificateRepo(s).by_serial(serial)
            except NotFound:
                raise NotFound("no such certificate") from None
            if row.der != cert.public_bytes(Encoding.DER):
                raise NotFound("no such certificate")
            proven = False  # the request itself proves the key compromised
            if req.account is None:
                # Signed by the certificate's key: only that key proves anything here.
                if _spki(req.key) != _spki(cert.public_key()):
                    raise Unauthorized("the JWS key is not the certificate's key")
                reason, proven = 1, True  # Boulder: revocation by the certificate key is keyCompromise
            else:
                order = OrderRepo(s).by_serial(serial)
                if order is None or order.account_id != req.account.id:
                    names = [n for n in row.sans.split() if n]
                    bases = [n[2:] if n.startswith("*.") else n for n in names]
                    held = AuthzRepo(s).valid_for(req.account.id, bases, self.clock.now())
                    if not names or not set(bases) <= held:
                        raise Unauthorized("this account may not revoke this certificate")
                    # Boulder: an account that controls the names but is not the
                    # subscriber revokes as cessationOfOperation; it has shown no
                    # compromise, and must not get the subscriber's key blocked.
                    reason = 5
            already = row.revoked_at is not None
        actor = (
            f"acme:{self.acme.urls.account(req.account.id) if req.account else 'certificate-key'}"
        )
        try:
            if already and proven:
                # Revoked before for another reason: the key is now shown compromised.
                done = self.revocation.key_compromise_proven(serial, actor=actor)
            elif already:
                raise AlreadyRevoked("the certificate is already revoked")
            else:
                done = self.revocation.revoke(serial, reason, actor=actor, comment="ACME revokeCert")
        except AlreadyRevokedError:
            raise AlreadyRevoked("the certificate is already revoked") from None
        if done.blocked_key and done.same_key:
            revoked = self.revocation.revoke_same_key(done, actor=actor)
            log.warning("keyCompromise of %s: revoked %d other certificate(s) with the same key: %s",
                        serial, len(revoked), " ".join(revoked))

    def certificate(self, serial: str) -> Any:
        """The stored row of an issued certificate (der, issuer_id, …)."""
        row = self.acme.ledger.certificate(serial)
        if row is None or row.state != "issued" or row.der is None:
            raise NotFound("no such certificate")
        return row


def _spki(key: Any) -> bytes:
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


__all__ = ["OrderFlow"]
