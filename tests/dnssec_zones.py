"""Signed test zones for the DNSSEC tests (issue #8): keys, signing, DS records.

``keygen`` makes one ECDSA P-256 key (algorithm 13, fast) per zone and uses it
as a combined signing key (KSK flag, ``dnssec-signzone -z``). ``sign_zone``
returns a ``tests.bind.Zone`` whose ``raw`` text is the signed zone, so BIND
serves it as is. ``hierarchy`` builds the tree the DNSSEC tests resolve through
Unbound (tests/unbound.py):

    .                      signed, the trust anchor (as the ICANN root is)
    test.                  signed, DS in .
      signed.test.         signed, DS in test.            → secure
      unsigned.test.       unsigned, no DS                → insecure
      dsonly.test.         DS in test., zone not signed   → bogus
      expired.test.        signed, RRSIGs expired         → bogus
      timeout.test.        no DS; its server never answers → insecure + timeout
      timeout-signed.test. DS in test.; server never answers → secure zone + timeout
      refused.test.        no DS; its server answers REFUSED
      refused-signed.test. DS in test.; its server answers REFUSED

Missing BIND tools fail the test with a message (apt-get install bind9-utils).
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.bind import Zone

ALGORITHM = "ECDSAP256SHA256"  # RFC 8624: algorithm 13, MUST implement; fast to sign


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: the DNSSEC tests sign zones with BIND's tools; "
                    "install them: apt-get install bind9-utils", pytrace=False)
    return path


def _run(args: list[str], cwd: Path) -> str:
    r = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{r.stdout}{r.stderr}")
    return r.stdout


@dataclass(frozen=True)
class Key:
    origin: str
    base: Path  # …/K<origin>+013+<tag> (without .key/.private)

    @property
    def key_file(self) -> Path:
        return self.base.parent / (self.base.name + ".key")

    @property
    def dnskey(self) -> str:
        """The DNSKEY record line from the .key file."""
        lines = self.key_file.read_text().splitlines()
        return next(line for line in lines if line and not line.startswith(";"))

    def ds(self) -> str:
        """The DS record (SHA-256 digest) for the parent zone, as a zone-file line."""
        return _run([tool("dnssec-dsfromkey"), "-2", str(self.key_file)],
                    self.base.parent).strip()


def keygen(keydir: Path, origin: str) -> Key:
    keydir.mkdir(parents=True, exist_ok=True)
    origin = origin.rstrip(".") + "."
    out = _run([tool("dnssec-keygen"), "-q", "-a", ALGORITHM, "-f", "KSK", "-n", "ZONE",
                "-K", str(keydir), origin], keydir)
    return Key(origin, keydir / out.strip())


def zone_text(origin: str, records: list[str], *, ns: str = "ns",
              root_ns: str = "ns.test.") -> str:
    """Unsigned zone text: SOA, NS ``ns.<origin>`` (glue 127.0.0.1) and ``records``.
    The root's NS is ``root_ns``, whose glue ``records`` must carry."""
    origin = origin.rstrip(".") + "."
    nsname = f"{ns}.{origin}" if origin != "." else root_ns
    head = [f"$ORIGIN {origin}", "$TTL 60",
            f"@ IN SOA {nsname} hostmaster.{nsname} 1 3600 600 86400 60", f"@ IN NS {nsname}"]
    if origin != ".":
        head.append(f"{ns} IN A 127.0.0.1")
    return "\n".join(head + records) + "\n"


def _stamp(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y%m%d%H%M%S")


def sign_zone(workdir: Path, origin: str, text: str, key: Key, *,
              inception: dt.datetime | None = None,
              expiration: dt.datetime | None = None) -> Zone:
    """Sign ``text`` with ``key`` (NSEC) and return it as a raw Zone for BIND."""
    workdir.mkdir(parents=True, exist_ok=True)
    origin = origin.rstrip(".") + "."
    label = origin.rstrip(".") or "root"
    src = workdir / f"{label}.unsigned"
    src.write_text(text + key.dnskey + "\n", encoding="utf-8")
    out = workdir / f"{label}.signed"
    args = [tool("dnssec-signzone"), "-q", "-z", "-K", str(key.base.parent), "-o", origin,
            "-f", str(out)]
    if inception is not None:
        args += ["-s", _stamp(inception)]
    if expiration is not None:
        args += ["-e", _stamp(expiration)]
    if expiration is not None and expiration < dt.datetime.now(dt.UTC):
        args.append("-P")  # no post-sign verification: the signatures are expired on purpose
    _run([*args, str(src), str(key.base.name)], key.base.parent)
    return Zone(origin, raw=out.read_text(encoding="utf-8"), allow_update=False)


@dataclass
class Hierarchy:
    """Zones for the main BIND, Unbound stubs (zone → "addr@port") and the trust anchor."""

    zones: list[Zone]
    stubs: dict[str, str] = field(default_factory=dict)
    trust_anchor: str = ""  # the root's DS record line


# Records every leaf zone carries (relative names).
LEAF_RECORDS = [
    "www IN A 127.0.0.1",
    "ok IN A 127.0.0.1",
    'ok IN CAA 0 issue "kakuin.example"',
    'other IN CAA 0 issue "other-ca.example"',
    "nodata IN TXT \"exists, but no CAA\"",
]


def hierarchy(workdir: Path, bind_port: int, *, silent: str, refuser: str,
              leaf_records: list[str] | None = None,
              now: dt.datetime | None = None) -> Hierarchy:
    """Build and sign the tree of the module docstring. ``silent`` and ``refuser``
    are "addr@port" of a server that never answers and one that answers REFUSED."""
    now = now or dt.datetime.now(dt.UTC)
    keys = workdir / "keys"
    leaf = LEAF_RECORDS + list(leaf_records or [])
    here = f"127.0.0.1@{bind_port}"
    zones: list[Zone] = []
    stubs: dict[str, str] = {}
    test_records: list[str] = []

    def delegate(label: str, ds: str | None = None) -> None:
        test_records.extend([f"{label} IN NS ns.{label}.test.", f"ns.{label} IN A 127.0.0.1"])
        if ds:
            test_records.append(ds)

    # secure child
    k = keygen(keys, "signed.test.")
    zones.append(sign_zone(workdir, "signed.test.", zone_text("signed.test.", leaf), k))
    delegate("signed", k.ds())
    stubs["signed.test."] = here
    # insecure child: no DS
    zones.append(Zone("unsigned.test.", leaf, allow_update=False))
    delegate("unsigned")
    stubs["unsigned.test."] = here
    # DS in the parent, the child is not signed: bogus
    k = keygen(keys, "dsonly.test.")
    zones.append(Zone("dsonly.test.", leaf, allow_update=False))
    delegate("dsonly", k.ds())
    stubs["dsonly.test."] = here
    # signed, but every signature expired ten days ago: bogus
    k = keygen(keys, "expired.test.")
    zones.append(sign_zone(workdir, "expired.test.", zone_text("expired.test.", leaf), k,
                           inception=now - dt.timedelta(days=40),
                           expiration=now - dt.timedelta(days=10)))
    delegate("expired", k.ds())
    stubs["expired.test."] = here
    # servers that time out / refuse, with and without a DS in the parent
    delegate("timeout")
    stubs["timeout.test."] = silent
    delegate("timeout-signed", keygen(keys, "timeout-signed.test.").ds())
    stubs["timeout-signed.test."] = silent
    delegate("refused")
    stubs["refused.test."] = refuser
    delegate("refused-signed", keygen(keys, "refused-signed.test.").ds())
    stubs["refused-signed.test."] = refuser

    k = keygen(keys, "test.")
    zones.append(sign_zone(workdir, "test.", zone_text("test.", test_records), k))
    stubs["test."] = here
    root_key = keygen(keys, ".")
    root = zone_text(".", ["test. IN NS ns.test.", "ns.test. IN A 127.0.0.1", k.ds()])
    zones.append(sign_zone(workdir, ".", root, root_key))
    stubs["."] = here
    return Hierarchy(zones, stubs, root_key.ds())
