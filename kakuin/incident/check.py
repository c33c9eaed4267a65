"""Check a live server: read the chain it sends and say, in plain words, what is
right, what is wrong, and what to do (PRODUCT.md §16).

``fetch_chain`` does one TLS handshake with verification off (pyOpenSSL's
``get_peer_cert_chain``: every certificate the server sent, in its order);
``analyze`` judges a chain against kakuin's store (our CAs, generations, the
revocation status of our certificates, open incidents) and optional extra
trust anchors; ``check_server`` does both (the portal and ``kakuin check`` call
it). Severities map to monitoring exit codes: 0 ok, 1 warning, 2 critical
(the Nagios/Icinga plugin convention).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import select
import socket
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID, NameOID

from kakuin.clock import as_utc
from kakuin.errors import KakuinError, NotFound
from kakuin.incident.report import jsonable

if TYPE_CHECKING:
    from kakuin.context import Context

OK, WARNING, CRITICAL = "ok", "warning", "critical"
EXIT = {OK: 0, WARNING: 1, CRITICAL: 2}
WARN_DAYS = 30
CRITICAL_DAYS = 7


@dataclass(frozen=True, slots=True)
class Finding:
    severity: str
    code: str
    en: str
    ja: str
    action_en: str = ""
    action_ja: str = ""


@dataclass(frozen=True, slots=True)
class CertSummary:
    subject: str
    issuer: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    sha256: str
    ca: str | None = None  # slug when it is one of kakuin's CAs


@dataclass(frozen=True, slots=True)
class CheckResult:
    host: str
    port: int
    sni: str | None
    checked_at: dt.datetime
    chain: tuple[CertSummary, ...]
    intermediate: str | None  # slug of the CA that issued the leaf (ours), else its name
    generation: int | None
    current_generation: int | None  # of the same purpose, issuing now
    complete: bool
    in_order: bool
    days_left: int | None
    revocation: str  # good | revoked | unknown | not-ours
    incident: str | None
    findings: tuple[Finding, ...] = field(default=())

    @property
    def severity(self) -> str:
        levels = [f.severity for f in self.findings]
        return CRITICAL if CRITICAL in levels else WARNING if WARNING in levels else OK

    @property
    def exit_code(self) -> int:
        return EXIT[self.severity]

    def json(self) -> dict[str, object]:

        body = asdict(self)
        body.update(severity=self.severity, exit_code=self.exit_code)
        return jsonable(body)  # type: ignore[return-value]

    def text(self, lang: str = "en") -> str:
        ja = lang == "ja"
        head = {OK: ("OK", "問題ありません"), WARNING: ("WARNING", "注意"), CRITICAL: ("CRITICAL", "重大")}[
            self.severity
        ]
        lines = [f"{head[0]}: {self.host}:{self.port}" + (f" ({head[1]})" if ja else "")]
        if self.intermediate:
            gen = f" G{self.generation}" if self.generation else ""
            cur = (
                f" (current: G{self.current_generation})"
                if self.current_generation and self.current_generation != self.generation
                else ""
            )
            lines.append(f"  {'中間CA' if ja else 'intermediate'}: {self.intermediate}{gen}{cur}")
        if self.days_left is not None:
            lines.append(f"  {'残り日数' if ja else 'days to expiry'}: {self.days_left}")
        for f in self.findings:
            lines.append(f"  [{f.severity}] {f.ja if ja else f.en}")
        actions = [f.action_ja if ja else f.action_en for f in self.findings if (f.action_ja if ja else f.action_en)]
        if actions:
            lines.append("  " + ("対応:" if ja else "what to do:"))
            lines += [f"    - {a}" for a in dict.fromkeys(actions)]
        return "\n".join(lines)


# -- reading the chain ---------------------------------------------------------
def fetch_chain(host: str, port: int = 443, *, sni: str | None = None, timeout: float = 10.0) -> list[x509.Certificate]:
    """Every certificate the server sends, in its order (verification off)."""
    from OpenSSL import SSL

    tls = SSL.Context(SSL.TLS_CLIENT_METHOD)
    tls.set_verify(SSL.VERIFY_NONE, lambda *_a: True)
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise KakuinError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
    conn = SSL.Connection(tls, sock)
    name = sni if sni is not None else (None if _is_ip(host) else host)
    if name:
        conn.set_tlsext_host_name(name.encode("idna"))
    conn.set_connect_state()
    deadline = dt.datetime.now().timestamp() + timeout
    try:
        while True:
            try:
                conn.do_handshake()
                break
            except (SSL.WantReadError, SSL.WantWriteError):
                left = deadline - dt.datetime.now().timestamp()
                if left <= 0 or not select.select([sock], [sock], [], left)[0:2]:
                    raise KakuinError(f"TLS handshake with {host}:{port} timed out") from None
            except SSL.Error as exc:
                raise KakuinError(f"TLS handshake with {host}:{port} failed: {exc}") from None
        chain = conn.get_peer_cert_chain(as_cryptography=True) or []
    finally:
        try:
            conn.shutdown()
        except SSL.Error:
            pass
        sock.close()
    return list(chain)


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    if child.issuer != parent.subject:
        return False
    try:
        child.verify_directly_issued_by(parent)
        return True
    except (ValueError, TypeError, Exception):  # noqa: BLE001 - InvalidSignature and friends
        return False


def _summary(c: x509.Certificate, ca: str | None = None) -> CertSummary:
    return CertSummary(
        c.subject.rfc4514_string(),
        c.issuer.rfc4514_string(),
        format(c.serial_number, "x"),
        c.not_valid_before_utc,
        c.not_valid_after_utc,
        hashlib.sha256(c.public_bytes(Encoding.DER)).hexdigest(),
        ca,
    )


def _matches(name: str, leaf: x509.Certificate) -> bool:
    try:
        sans = leaf.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
        names = [n.lower() for n in sans.get_values_for_type(x509.DNSName)]
        ips = [str(i) for i in sans.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        names = [str(a.value).lower() for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        ips = []
    name = name.lower().rstrip(".")
    if name in ips:
        return True
    for n in names:
        if n == name or (n.startswith("*.") and "." in name and name.split(".", 1)[1] == n[2:]):
            return True
    return False


# -- judging it -----------------------------------------------------------------
@dataclass
class _Store:
    """What kakuin knows: its CAs (by DER), cross-certificates, trust anchors."""

    cas: dict[bytes, object] = field(default_factory=dict)  # DER → CertificateAuthority row
    certs: list[tuple[x509.Certificate, object]] = field(default_factory=list)
    anchors: list[x509.Certificate] = field(default_factory=list)


def _load_store(ctx: Context | None, extra_anchors: Sequence[x509.Certificate]) -> _Store:
    st = _Store(anchors=list(extra_anchors))
    if ctx is None:
        return st
    from kakuin.store.repos import CARepo

    with ctx.db.session() as s:
        for ca in CARepo(s).all():
            cert = x509.load_der_x509_certificate(ca.der)
            st.cas[ca.der] = ca
            st.certs.append((cert, ca))
            if ca.kind == "root":
                st.anchors.append(cert)
    return st


def analyze(
    ctx: Context | None,
    chain: Sequence[x509.Certificate],
    *,
    host: str,
    port: int = 443,
    sni: str | None = None,
    extra_anchors: Sequence[x509.Certificate] = (),
    now: dt.datetime | None = None,
) -> CheckResult:
    """Judge the chain a server sent."""
    now = now or (ctx.clock.now() if ctx is not None else dt.datetime.now(dt.UTC))
    st = _load_store(ctx, extra_anchors)
    findings: list[Finding] = []
    if not chain:
        findings.append(
            Finding(
                CRITICAL,
                "no-certificate",
                "the server sent no certificate",
                "サーバが証明書を送っていません",
                "configure the certificate on the server",
                "サーバに証明書を設定してください",
            )
        )
        return CheckResult(
            host, port, sni, now, (), None, None, None, False, False, None, "unknown", None, tuple(findings)
        )
    leaf = chain[0]
    sent = list(chain[1:])
    summaries = [_summary(c, getattr(st.cas.get(c.public_bytes(Encoding.DER)), "slug", None)) for c in chain]

    # names
    name = sni or host
    if (sni or not _is_ip(host)) and not _matches(name, leaf):
        findings.append(
            Finding(
                CRITICAL,
                "name-mismatch",
                f"the certificate is not for {name}",
                f"証明書が {name} 用ではありません",
                f"install a certificate that names {name}",
                f"{name} を含む証明書を設定してください",
            )
        )

    # expiry
    not_after = leaf.not_valid_after_utc
    days_left = (not_after - now) // dt.timedelta(days=1)
    if not_after <= now:
        findings.append(
            Finding(
                CRITICAL,
                "expired",
                f"the certificate expired on {not_after:%Y-%m-%d}",
                f"証明書は {not_after:%Y-%m-%d} に期限切れになっています",
                "get a new certificate and install it now",
                "直ちに証明書を更新して設定してください",
            )
        )
    elif leaf.not_valid_before_utc > now:
        findings.append(
            Finding(
                CRITICAL, "not-yet-valid", "the certificate is not valid yet", "証明書はまだ有効期間が始まっていません"
            )
        )
    elif days_left <= CRITICAL_DAYS or days_left <= WARN_DAYS:
        sev = CRITICAL if days_left <= CRITICAL_DAYS else WARNING
        findings.append(
            Finding(
                sev,
                "expiring",
                f"the certificate expires in {days_left} days ({not_after:%Y-%m-%d})",
                f"証明書の有効期限まで残り {days_left} 日です({not_after:%Y-%m-%d})",
                "renew the certificate (and check that automatic renewal runs)",
                "証明書を更新してください(自動更新が動いているか確認してください)",
            )
        )

    # the path
    path = [leaf]
    in_order = True
    complete = False
    used: set[int] = set()
    current = leaf
    for _ in range(8):
        if any(_issued_by(current, a) for a in st.anchors):
            complete = True
            break
        nxt = next((i for i, c in enumerate(sent) if i not in used and _issued_by(current, c)), None)
        if nxt is None:
            break
        if nxt != len(path) - 1:
            in_order = False
        used.add(nxt)
        current = sent[nxt]
        path.append(current)
        if current.subject == current.issuer:  # a root the server sent
            complete = any(current == a for a in st.anchors)
            break
    issuer_row = None
    leaf_issuer_cert = path[1] if len(path) > 1 else None
    if leaf_issuer_cert is None:
        # not sent: do we know it?
        for cert, row in st.certs:
            if _issued_by(leaf, cert):
                issuer_row, leaf_issuer_cert = row, cert
                break
    else:
        issuer_row = st.cas.get(leaf_issuer_cert.public_bytes(Encoding.DER))
    if not complete:
        missing = (
            leaf_issuer_cert.subject.rfc4514_string() if leaf_issuer_cert is not None else leaf.issuer.rfc4514_string()
        )
        wrong = [c for c in sent if c.subject != leaf.issuer and _same_family(c, leaf.issuer)]
        if wrong and len(path) == 1:
            sent_name = wrong[0].subject.rfc4514_string()
            findings.append(
                Finding(
                    CRITICAL,
                    "wrong-intermediate",
                    f"the server sends {sent_name}, but the certificate was issued by {missing}",
                    f"サーバが送っている中間CA証明書 ({sent_name}) は、証明書の発行者 ({missing}) と異なります",
                    f"install the intermediate {missing} (chain.pem that came with the certificate)",
                    f"中間CA証明書 {missing} を設定してください(証明書と一緒に届いた chain.pem)",
                )
            )
        else:
            findings.append(
                Finding(
                    CRITICAL,
                    "incomplete-chain",
                    f"the chain is incomplete: the server does not send {missing}",
                    f"チェーンが不完全です: サーバが中間CA証明書 {missing} を送っていません",
                    "install the intermediate certificate too (use fullchain.pem, or add chain.pem)",
                    "中間CA証明書も設定してください(fullchain.pem を使うか chain.pem を追加)",
                )
            )
    elif not in_order:
        findings.append(
            Finding(
                WARNING,
                "chain-order",
                "the chain is complete but not in order",
                "チェーンはそろっていますが順序が正しくありません",
                "send the leaf first, then its issuer, then the next",
                "証明書、発行者の中間CA、その上位の順に並べてください",
            )
        )
    extra = [c for i, c in enumerate(sent) if i not in used and c.subject != c.issuer]
    if complete and extra:
        findings.append(
            Finding(
                WARNING,
                "extra-certificates",
                f"the server also sends {len(extra)} certificate(s) not on the path",
                f"経路に含まれない証明書を {len(extra)} 枚送っています",
                "remove certificates of other (older) intermediates from the chain file",
                "古い中間CA証明書などをチェーンファイルから外してください",
            )
        )

    # our intermediate, its generation, its status; the leaf's status and incidents
    generation = current_gen = None
    intermediate: str | None = leaf_issuer_cert.subject.rfc4514_string() if leaf_issuer_cert is not None else None
    revocation, incident = "not-ours", None
    if issuer_row is not None and ctx is not None:
        intermediate, generation, current_gen, revocation, incident = _ours(ctx, leaf, issuer_row, now, findings)
    if not findings:
        findings.append(
            Finding(OK, "ok", "certificate, chain and status are fine", "証明書、チェーン、状態とも問題ありません")
        )
    return CheckResult(
        host,
        port,
        sni,
        now,
        tuple(summaries),
        intermediate,
        generation,
        current_gen,
        complete,
        in_order,
        days_left,
        revocation,
        incident,
        tuple(findings),
    )


def _same_family(c: x509.Certificate, issuer: x509.Name) -> bool:
    """Another generation of the same intermediate: same name up to " - Gn"."""
    import re

    def base(n: x509.Name) -> str:
        cn = n.get_attributes_for_oid(NameOID.COMMON_NAME)
        return re.sub(r"\s*-\s*G\d+$", "", str(cn[0].value)) if cn else ""

    return bool(base(c.subject)) and base(c.subject) == base(issuer)


def _ours(
    ctx: Context,
    leaf: x509.Certificate,
    row,
    now: dt.datetime,  # type: ignore[no-untyped-def]
    findings: list[Finding],
) -> tuple[str, int, int | None, str, str | None]:
    from kakuin.ca.rotation import ScheduledCARevocation
    from kakuin.incident.report import affected_serials
    from kakuin.store.repos import CARepo, CertificateRepo

    serial = format(leaf.serial_number, "x")
    with ctx.db.session() as s:
        current = CARepo(s).issuing_for(row.purpose, now)
        sched = s.get(ScheduledCARevocation, row.id)
        try:
            cert = CertificateRepo(s).by_serial(serial)
        except NotFound:
            cert = None
        inc = affected_serials(s).get(serial)
        inc_info = (inc.name, as_utc(inc.deadline), inc.replacement) if inc is not None else None
    label = f"{row.name} ({row.slug})"
    current_gen = current.generation if current is not None else None
    if row.status == "revoked":
        findings.append(
            Finding(
                CRITICAL,
                "intermediate-revoked",
                f"the intermediate {label} has been revoked",
                f"中間CA {label} は失効しています",
                "get a new certificate and install it with the new intermediate",
                "証明書を再発行し、新しい中間CA証明書と一緒に設定してください",
            )
        )
    elif sched is not None and sched.applied_at is None:
        findings.append(
            Finding(
                WARNING,
                "intermediate-to-be-revoked",
                f"the intermediate {label} will be revoked on {as_utc(sched.at):%Y-%m-%d}",
                f"中間CA {label} は {as_utc(sched.at):%Y-%m-%d} に失効予定です",
                "replace the certificate before that date",
                "その日までに証明書を置き換えてください",
            )
        )
    if current is not None and current.id != row.id and row.status != "revoked":
        findings.append(
            Finding(
                WARNING,
                "old-generation",
                f"issued by G{row.generation}; kakuin issues from {current.name} (G{current.generation}) now",
                f"G{row.generation} から発行された証明書です。現在の発行は {current.name} (G{current.generation}) です",
                f"at the next renewal, install the new intermediate {current.name}",
                f"次回の更新時に新しい中間CA証明書 {current.name} を設定してください",
            )
        )
    if cert is None:
        revocation = "unknown"
        findings.append(
            Finding(
                WARNING,
                "unknown-serial",
                f"kakuin has no record of serial {serial}",
                f"シリアル番号 {serial} の記録がありません",
            )
        )
    elif cert.revoked_at is not None:
        revocation = "revoked"
        findings.append(
            Finding(
                CRITICAL,
                "revoked",
                f"the certificate was revoked on {as_utc(cert.revoked_at):%Y-%m-%d} (reason {cert.revocation_reason})",
                f"証明書は {as_utc(cert.revoked_at):%Y-%m-%d} に失効しています(理由 {cert.revocation_reason})",
                "get a new certificate and install it now",
                "直ちに新しい証明書を取得して設定してください",
            )
        )
    else:
        revocation = "good"
    incident = None
    if inc_info is not None and revocation != "revoked":
        incident, deadline, repl = inc_info
        sev = CRITICAL if deadline <= now else WARNING
        findings.append(
            Finding(
                sev,
                "incident",
                f"affected by incident {incident}: it will be revoked on {deadline:%Y-%m-%d}",
                f"インシデント {incident} の対象です: {deadline:%Y-%m-%d} に失効されます",
                f"reissue the certificate before {deadline:%Y-%m-%d} and install it with the new "
                f"intermediate{' ' + repl if repl else ''}",
                f"{deadline:%Y-%m-%d} までに証明書を再発行し、新しい中間CA証明書"
                f"{'(' + repl + ')' if repl else ''}と一緒に設定してください",
            )
        )
    return label, row.generation, current_gen, revocation, incident


def load_anchors(path: str | None) -> list[x509.Certificate]:
    if not path:
        return []
    data = open(path, "rb").read()  # noqa: SIM115
    return x509.load_pem_x509_certificates(data) if b"-----BEGIN" in data else [x509.load_der_x509_certificate(data)]


def parse_target(target: str, default_port: int = 443) -> tuple[str, int]:
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if target.count(":") == 1:
        host, port = target.split(":")
        return host, int(port)
    return target, default_port


def check_server(
    ctx: Context | None, target: str, *, sni: str | None = None, ca_file: str | None = None, timeout: float = 10.0
) -> CheckResult:
    """Connect, read the chain, judge it. The service the CLI and the portal call."""
    host, port = parse_target(target)
    chain = fetch_chain(host, port, sni=sni, timeout=timeout)
    return analyze(ctx, chain, host=host, port=port, sni=sni, extra_anchors=load_anchors(ca_file))
