"""ACME load: N complete orders (newOrder → http-01 → finalize → download) by C
concurrent clients, against kakuin (SQLite and PostgreSQL) and Pebble, with the
same small async client and the same http-01 responder.

    .venv/bin/python bench/acme_load.py -n 200 -c 8 --workers 2 --rounds 3 \
        [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test] [--no-pg] [--no-lint] \
        [--client light|certbot] [--kakuin-tls [nginx|socat]]

Everything listens on 127.0.0.1. Names resolve through one DNS server used by
both CAs (kakuin: va.resolver; Pebble: -dnsserver): by default BIND 9 serving
``jp.`` with 300 s TTLs, as real zones have (every ``*.bench.ac.jp`` → A
127.0.0.1, no AAAA, no CAA anywhere); ``--dns challtestsrv`` uses
pebble-challtestsrv instead, whose answers all carry TTL 0 (nothing can be
cached). Neither validates, so kakuin runs with ``va.dnssec = false`` (its
development setting for a non-validating resolver).
kakuin runs as its own `kakuin serve --workers W` with pre-issuance lint on (its
normal pipeline); its data directory gets `kakuin ocsp refresh` first, so the
measured runs do not include the one-time signing of every empty CRL shard.
Pebble with PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 and a throwaway TLS
certificate. Clients poll every 20 ms (``--poll-ms``; sooner if Retry-After
says so), the setting the issue names.

The client (class ``Account``, shared by bench/acme_probe.py) is the same for
every server and as light as it can be made, since it runs on the machine under
test and its CPU is taken from the server's. It needs aiohttp (``pip install -e
'.[bench]'``): keep-alive HTTP/1.1 through aiohttp's C parser, TLS to Pebble
without verification, plain HTTP to kakuin, at most 2·C connections. Each
account holds an ES256 key and signs every POST with its kid (``jwk`` only for
newAccount, with EAB for kakuin); it sends HEAD newNonce only when it holds no
nonce (the first request, or a response without Replay-Nonce) and retries a
badNonce up to five times. An order is newOrder, POST-as-GET of each
authorization, POST to its http-01 challenge, polls of the authorization until
valid, polls of the order until ready, finalize with a fresh P-256 key and CSR,
polls until valid if finalize did not return it valid, and the certificate
download. The http-01 responder is an asyncio Protocol in the same process
(one request per connection). Client CPU (this process: client, responder and
event loop) was ~13 ms/order with httpx, ~3.5 with aiohttp; what is left is
mostly the event loop and socket system calls, then JWS signing.

``--client certbot`` runs the same orders through certbot's own ACME library
(``acme.client.ClientV2``: the protocol code of the issue's reference client),
a thread and an account per client, its sleeps capped at ``--poll-ms``. It
polls an authorization at once and then after each sleep, and sleeps before
every poll of a finalized order, as certbot does. This is the setting in which
Pebble makes the issue's "about 47 certificates/s with 8 clients polling every
20 ms" (48–84 certs/s measured here); the light client gets 115–195 from
Pebble on the same machine, because it costs a quarter of the CPU per order
and never sleeps before a poll. Both are reported in bench/RESULTS.md.

Pebble serves only HTTPS, so by default the client pays TLS for Pebble and not
for kakuin. ``--kakuin-tls`` puts nginx, configured as docs/acme.md says, in
front of kakuin (``--kakuin-tls socat``: socat with OpenSSL instead), and
counts the proxy's CPU as kakuin's.

The servers stay up and the rounds are interleaved (Pebble, kakuin SQLite,
kakuin PostgreSQL, Pebble, …) so that load from other work on the machine
falls on all of them alike; the summary gives medians over rounds and the
median of the per-round ratios. Besides wall-clock rates it reports each
server's CPU time per order (its whole process tree, from /proc), which
machine noise disturbs much less.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

try:
    import aiohttp
except ImportError:  # the bench extra: pip install -e '.[bench]'
    sys.exit("bench/acme_load.py needs aiohttp: pip install -e '.[bench]'")

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.tls_proxy import start_nginx, throwaway_tls  # noqa: E402  (the test suite's nginx and certificate)

# The setting: clients poll every 20 ms (or sooner if Retry-After says so).
POLL_SECONDS = 0.02
REQUESTS = [0]  # HTTP requests the clients sent (for requests per order)
TOKENS: dict[str, str] = {}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- http-01 responder -----------------------------------------------------------
class Responder(asyncio.Protocol):
    """http-01 answers from TOKENS: one request per connection, then close (as
    the validation servers expect). A bare Protocol rather than asyncio streams:
    the responder runs in the client's process, so its CPU counts as client CPU."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if b"\r\n\r\n" not in self.buf and b"\n\n" not in self.buf:
            return
        line = self.buf.split(b"\n", 1)[0].decode(errors="replace")
        token = line.split(" ")[1].rsplit("/", 1)[-1] if " " in line else ""
        body = TOKENS.get(token)
        if body is None:
            self.transport.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        else:
            self.transport.write(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}"
                                 .encode())
        self.transport.close()


async def start_responder(port: int) -> asyncio.Server:
    return await asyncio.get_running_loop().create_server(Responder, "127.0.0.1", port)


# -- the client -------------------------------------------------------------------
class Response:
    """The parts of an HTTP response the client looks at, body read in full."""

    __slots__ = ("status_code", "headers", "content")

    def __init__(self, status_code: int, headers: Any, content: bytes) -> None:
        self.status_code, self.headers, self.content = status_code, headers, content

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


class Http:
    """Keep-alive HTTP/1.1 connections (aiohttp, whose C parser makes it cheap per
    request) shared by all accounts of a run; TLS without verification when
    ``verify`` is false (Pebble's throwaway certificate)."""

    def __init__(self, *, verify: bool = True, connections: int = 100, timeout: float = 120) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connections, ssl=verify),
            timeout=aiohttp.ClientTimeout(total=timeout), cookie_jar=aiohttp.DummyCookieJar())

    async def __aenter__(self) -> Http:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()

    async def request(self, method: str, url: str, body: bytes | None = None,
                      headers: dict[str, str] | None = None) -> Response:
        async with self.session.request(method, url, data=body, headers=headers) as r:
            return Response(r.status, r.headers, await r.read())

    async def get(self, url: str) -> Response:
        return await self.request("GET", url)

    async def head(self, url: str) -> Response:
        return await self.request("HEAD", url)


JOSE = {"Content-Type": "application/jose+json"}


class Account:
    def __init__(self, http: Http, directory: str) -> None:
        self.http, self.directory = http, directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        n = self.key.public_key().public_numbers()
        self.jwk = {"crv": "P-256", "kty": "EC", "x": b64(n.x.to_bytes(32, "big")),
                    "y": b64(n.y.to_bytes(32, "big"))}
        canon = json.dumps(self.jwk, sort_keys=True, separators=(",", ":")).encode()
        self.thumb = b64(hashlib.sha256(canon).digest())
        self.kid: str | None = None
        self.nonce: str | None = None
        self.dir: dict[str, Any] = {}

    def sign(self, url: str, payload: Any, *, jwk: bool = False, header: dict[str, Any] | None = None
             ) -> dict[str, str]:
        prot: dict[str, Any] = {"alg": "ES256", "nonce": self.nonce, "url": url}
        prot.update({"jwk": self.jwk} if jwk else {"kid": self.kid})
        prot.update(header or {})
        p64 = b64(json.dumps(prot).encode())
        pl = "" if payload is None else b64(json.dumps(payload).encode())
        r, s = decode_dss_signature(self.key.sign(f"{p64}.{pl}".encode(), ec.ECDSA(hashes.SHA256())))
        return {"protected": p64, "payload": pl, "signature": b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))}

    async def post(self, url: str, payload: Any, **kw: Any) -> Response:
        for _ in range(5):
            if self.nonce is None:
                REQUESTS[0] += 1
                self.nonce = (await self.http.head(self.dir["newNonce"])).headers["Replay-Nonce"]
            REQUESTS[0] += 1
            jws = json.dumps(self.sign(url, payload, **kw), separators=(",", ":")).encode()
            r = await self.http.request("POST", url, jws, JOSE)
            self.nonce = r.headers.get("Replay-Nonce")
            if r.status_code == 400 and b"badNonce" in r.content:
                continue
            return r
        raise RuntimeError("badNonce five times")

    async def register(self, eab: tuple[str, str] | None) -> None:
        self.dir = (await self.http.get(self.directory)).json()
        payload: dict[str, Any] = {"termsOfServiceAgreed": True, "contact": ["mailto:bench@bench.ac.jp"]}
        if eab:
            kid, key = eab
            p64 = b64(json.dumps({"alg": "HS256", "kid": kid, "url": self.dir["newAccount"]}).encode())
            pl = b64(json.dumps(self.jwk).encode())
            import hmac as _h

            mac = _h.new(base64.urlsafe_b64decode(key + "=" * (-len(key) % 4)), f"{p64}.{pl}".encode(),
                         hashlib.sha256).digest()
            payload["externalAccountBinding"] = {"protected": p64, "payload": pl, "signature": b64(mac)}
        r = await self.post(self.dir["newAccount"], payload, jwk=True)
        assert r.status_code in (200, 201), r.text
        self.kid = r.headers["Location"]

    async def poll(self, url: str, done: tuple[str, ...]) -> dict[str, Any]:
        for _ in range(600):
            r = await self.post(url, None)
            body = r.json()
            if body.get("status") in done:
                return body
            await asyncio.sleep(min(float(r.headers.get("Retry-After", "1") or 1), POLL_SECONDS))
        raise RuntimeError(f"{url} stuck: {body}")

    async def order(self, name: str) -> float:
        t0 = time.perf_counter()
        r = await self.post(self.dir["newOrder"], {"identifiers": [{"type": "dns", "value": name}]})
        assert r.status_code == 201, r.text
        order, order_url = r.json(), r.headers["Location"]
        for az in order["authorizations"]:
            authz = (await self.post(az, None)).json()
            if authz["status"] == "valid":
                continue
            ch = next(c for c in authz["challenges"] if c["type"] == "http-01")
            TOKENS[ch["token"]] = f"{ch['token']}.{self.thumb}"
            await self.post(ch["url"], {})
            res = await self.poll(az, ("valid", "invalid"))
            assert res["status"] == "valid", res
        await self.poll(order_url, ("ready",))
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
               .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
               .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))
        r = await self.post(order["finalize"], {"csr": b64(csr)})
        assert r.status_code == 200, r.text
        final = r.json() if r.json().get("status") == "valid" else await self.poll(order_url, ("valid", "invalid"))
        assert final["status"] == "valid", final
        cert = await self.post(final["certificate"], None)
        assert b"BEGIN CERTIFICATE" in cert.content
        return time.perf_counter() - t0


def certbot_load(directory: str, n: int, c: int, eab: list[tuple[str, str]] | None, verify: bool,
                 ) -> tuple[list[float], float, int]:
    """The same N orders through certbot's own ACME library (``acme.client.ClientV2``,
    the protocol code of the issue's reference client), one thread and one account
    per client: ``new_order``, ``answer_challenge`` for http-01, then
    ``poll_and_finalize``, which polls each authorization at once and then every
    second, and before each poll of a finalized order sleeps first (a second, or
    the order's Retry-After). Its sleeps are capped at ``POLL_SECONDS``: the
    issue's "polling every 20 ms". Returns the latencies, the client process's CPU
    seconds and the HTTP requests sent."""
    import threading
    import types
    import warnings

    import josepy as jose
    from acme import challenges, crypto_util, messages
    from acme import client as acme_client

    real_sleep = time.sleep
    acme_client.time = types.SimpleNamespace(sleep=lambda s: real_sleep(min(s, POLL_SECONDS)))  # type: ignore[attr-defined]
    warnings.filterwarnings("ignore", message="Unverified HTTPS request")
    sent = [0]
    original_send = acme_client.ClientNetwork._send_request

    def counting_send(self: Any, *args: Any, **kw: Any) -> Any:
        sent[0] += 1
        return original_send(self, *args, **kw)

    acme_client.ClientNetwork._send_request = counting_send  # type: ignore[method-assign]

    def account(i: int) -> Any:
        key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
        net = acme_client.ClientNetwork(key, alg=jose.ES256, verify_ssl=verify, user_agent="kakuin-bench")
        d = acme_client.ClientV2.get_directory(directory, net)
        cl = acme_client.ClientV2(d, net)
        binding = (messages.ExternalAccountBinding.from_data(account_public_key=key.public_key(), kid=eab[i][0],
                                                             hmac_key=eab[i][1], directory=d) if eab else None)
        cl.new_account(messages.NewRegistration.from_data(
            email="bench@bench.ac.jp", terms_of_service_agreed=True, external_account_binding=binding))
        return cl

    clients = [account(i) for i in range(c)]
    run = uuid.uuid4().hex[:6]
    queue = list(range(n))
    latencies: list[float] = []
    errors: list[BaseException] = []

    def worker(cl: Any) -> None:
        try:
            while queue:
                i = queue.pop()
                name = f"c{i}-{run}.bench.ac.jp"
                t0 = time.perf_counter()
                key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
                orderr = cl.new_order(crypto_util.make_csr(key, [name]))
                for authzr in orderr.authorizations:
                    if authzr.body.status == messages.STATUS_VALID:
                        continue
                    chall = next(ch for ch in authzr.body.challenges if isinstance(ch.chall, challenges.HTTP01))
                    response, validation = chall.response_and_validation(cl.net.key)
                    TOKENS[chall.chall.encode("token")] = validation
                    cl.answer_challenge(chall, response)
                final = cl.poll_and_finalize(orderr)
                assert "BEGIN CERTIFICATE" in final.fullchain_pem
                latencies.append(time.perf_counter() - t0)
        except BaseException as e:  # noqa: BLE001 - reported after the run
            errors.append(e)

    sent0, cpu0 = sent[0], time.process_time()
    threads = [threading.Thread(target=worker, args=(cl,)) for cl in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return latencies, time.process_time() - cpu0, sent[0] - sent0


def tree_cpu(pid: int | list[int]) -> float:
    """CPU seconds (user + system) of ``pid`` (or of each pid) and its descendants,
    live or reaped."""
    tick = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            fields = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(d)] = int(fields[1])
        # utime + stime, and cutime + cstime: children that exited and were reaped
        # (socat's per-connection processes) count towards their parent.
        cpu[int(d)] = (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / tick
    total, todo = 0.0, list(pid) if isinstance(pid, list) else [pid]
    while todo:
        p = todo.pop()
        total += cpu.get(p, 0.0)
        todo += [c for c, pp in parent.items() if pp == p]
    return total


async def load(directory: str, n: int, c: int, eab: list[tuple[str, str]] | None, label: str,
               verify: bool, server_pid: int | list[int] | None = None, client: str = "light") -> dict[str, float]:
    if client == "certbot":
        cpu0 = tree_cpu(server_pid) if server_pid else 0.0
        t0 = time.perf_counter()
        latencies, client_cpu, sent = await asyncio.to_thread(certbot_load, directory, n, c, eab, verify)
        return report(label, n, c, latencies, time.perf_counter() - t0, client_cpu,
                      tree_cpu(server_pid) - cpu0 if server_pid else 0.0, sent)
    async with Http(verify=verify, connections=c * 2) as http:
        accounts = [Account(http, directory) for _ in range(c)]
        await asyncio.gather(*(a.register(eab[i] if eab else None) for i, a in enumerate(accounts)))
        run = uuid.uuid4().hex[:6]
        queue = list(range(n))
        latencies: list[float] = []

        async def worker(a: Account) -> None:
            while queue:
                i = queue.pop()
                latencies.append(await a.order(f"n{i}-{run}.bench.ac.jp"))

        req0 = REQUESTS[0]
        cpu0 = tree_cpu(server_pid) if server_pid else 0.0
        client0 = time.process_time()
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(a) for a in accounts))
        wall = time.perf_counter() - t0
        client = time.process_time() - client0
        cpu = tree_cpu(server_pid) - cpu0 if server_pid else 0.0
    return report(label, n, c, latencies, wall, client, cpu, REQUESTS[0] - req0)


def report(label: str, n: int, c: int, latencies: list[float], wall: float, client: float, cpu: float,
           requests: int) -> dict[str, float]:
    lat = sorted(latencies)
    res = {"certs_per_s": n / wall, "p50": statistics.median(lat), "p95": lat[int(0.95 * (len(lat) - 1))],
           "wall": wall, "cpu_ms_per_order": cpu / n * 1000, "client_cpu_ms_per_order": client / n * 1000,
           "requests_per_order": requests / n}
    print(f"{label:22s} {res['certs_per_s']:7.2f} certs/s   p50 {res['p50']*1000:6.0f} ms   "
          f"p95 {res['p95']*1000:6.0f} ms   server CPU {res['cpu_ms_per_order']:5.1f} ms/order   "
          f"client CPU {res['client_cpu_ms_per_order']:4.1f} ms/order   "
          f"{res['requests_per_order']:4.1f} req/order   ({n} orders, {c} clients, {wall:.1f} s)",
          flush=True)
    return res


def log_file(work: Path, name: str) -> Any:
    """Where a server's stderr goes: a file, never an undrained pipe (a server
    that logs 64 KiB into a pipe nobody reads blocks, and the run would stall)."""
    return (work / f"{name}.stderr.log").open("ab")


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            log = Path(proc.stderr_path) if hasattr(proc, "stderr_path") else None  # type: ignore[attr-defined]
            tail = log.read_text(errors="replace")[-4000:] if log is not None and log.exists() else ""
            raise RuntimeError(f"{what} exited: {tail}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not start")


def kakuin_cli(data: Path, *args: str, env: dict[str, str]) -> str:
    r = subprocess.run([str(BIN / "kakuin"), *args, "--data-dir", str(data)], capture_output=True,
                       text=True, env=env, check=True)
    return r.stdout


def start_kakuin(work: Path, dns_port: int, http01: int, db_url: str | None, clients: int, workers: int,
                 lint: bool, tls: str = "") -> tuple[list[subprocess.Popen[bytes]], str, list[tuple[str, str]]]:
    """kakuin serve (and, with ``tls`` "nginx" or "socat", that TLS terminator in
    front of it); the processes, the directory URL and EAB credentials for
    ``clients`` accounts."""
    data = work / ("kakuin-pg" if db_url else "kakuin-sqlite")
    port = free_port()
    public = free_port() if tls else port
    env = dict(os.environ, KAKUIN_CA_PASSPHRASE="bench-passphrase-not-secret")
    if not lint:
        env["KAKUIN_LINT"] = "0"
    scheme = "https" if tls else "http"
    args = ["init", "--base-url", f"{scheme}://127.0.0.1:{public}", "--listen", f"127.0.0.1:{port}"]
    if db_url:
        args += ["--database-url", db_url]
    kakuin_cli(data, *args, env=env)
    with (data / "kakuin.toml").open("a") as fh:
        fh.write(f'\n[va]\nhttp01_port = {http01}\nresolver = "127.0.0.1:{dns_port}"\ndnssec = false\n'
                 'allow_private_targets = true\n')
        # Rate limits stay on, so their counts are part of what is measured, but
        # high enough that a large -n on few clients never reaches them.
        fh.write("\n[acme.limits]\nnew_orders = 1000000\npending_authorizations = 1000000\n")
    kakuin_cli(data, "institution", "add", "Bench University", "--domain", "bench.ac.jp", env=env)
    creds = []
    for _ in range(clients):
        j = json.loads(kakuin_cli(data, "eab", "new", "--institution", "Bench University", "--json", env=env))
        creds.append((j["kid"], j["hmac_key"]))
    kakuin_cli(data, "ocsp", "refresh", env=env)  # CRL shards and OCSP responders, once
    serve = ["serve", "--data-dir", str(data)] + (["--workers", str(workers)] if workers != 1 else [])
    err = log_file(work, data.name)
    proc = subprocess.Popen([str(BIN / "kakuin"), *serve], env=env, stdout=subprocess.DEVNULL, stderr=err)
    proc.stderr_path = err.name  # type: ignore[attr-defined]
    wait_port(port, proc, "kakuin serve")
    procs = [proc]
    if tls:
        procs.append(start_tls_proxy(work, f"{data.name}-{tls}", tls, public, port))
    return procs, f"{scheme}://127.0.0.1:{public}/acme/directory", creds


def start_tls_proxy(bench_work: Path, name: str, kind: str, public: int, port: int) -> subprocess.Popen[bytes]:
    """TLS ended in front of kakuin, as a reverse proxy would end it, plain HTTP on
    to kakuin; the proxy's CPU counts as kakuin's. ``nginx``: the configuration of
    docs/acme.md (tests/tls_proxy.py, one worker, keep-alive connections to
    kakuin), what an operator would run. ``socat`` (OpenSSL, a process per
    connection, TCP_NODELAY both ways: without it Nagle's algorithm and delayed
    ACKs hold every response for 40 ms)."""
    work = bench_work / name
    if kind == "nginx":
        return start_nginx(work, public, port, stderr=log_file(bench_work, name))[0]
    work.mkdir(exist_ok=True)
    cert, key = throwaway_tls(work, "kakuin-tls")
    proxy = subprocess.Popen(
        ["socat", f"OPENSSL-LISTEN:{public},bind=127.0.0.1,reuseaddr,fork,cert={cert},key={key},nodelay,"
         "verify=0", f"TCP:127.0.0.1:{port},nodelay"], stdout=subprocess.DEVNULL, stderr=log_file(bench_work, name))
    wait_port(public, proxy, kind)
    return proxy


def start_pebble(work: Path, dns_port: int, http01: int) -> tuple[subprocess.Popen[bytes], str]:
    throwaway_tls(work, "pebble")
    port, mgmt = free_port(), free_port()
    (work / "pebble.json").write_text(json.dumps({"pebble": {
        "listenAddress": f"127.0.0.1:{port}", "managementListenAddress": f"127.0.0.1:{mgmt}",
        "certificate": str(work / "pebble.pem"), "privateKey": str(work / "pebble.key"),
        "httpPort": http01, "tlsPort": free_port(), "ocspResponderURL": "",
        "externalAccountBindingRequired": False}}))
    env = dict(os.environ, PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT="0", PEBBLE_AUTHZREUSE="0")
    proc = subprocess.Popen([shutil.which("pebble") or "/usr/bin/pebble", "-config", str(work / "pebble.json"),
                             "-dnsserver", f"127.0.0.1:{dns_port}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=(err := log_file(work, "pebble")))
    proc.stderr_path = err.name  # type: ignore[attr-defined]
    wait_port(port, proc, "pebble")
    return proc, f"https://127.0.0.1:{port}/dir"


def pg_schema_url(url: str) -> tuple[str, str]:
    from sqlalchemy import create_engine, text

    schema = f"bench_acme_{uuid.uuid4().hex[:8]}"
    eng = create_engine(url)
    with eng.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    eng.dispose()
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}", schema


def drop_schema(url: str, schema: str) -> None:
    from sqlalchemy import create_engine, text

    eng = create_engine(url)
    with eng.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    eng.dispose()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("-c", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2, help="kakuin serve --workers (default 2)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per server (default 3)")
    ap.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--no-sqlite", action="store_true")
    ap.add_argument("--no-lint", action="store_true", help="kakuin with pre-issuance lint off (not a headline)")
    ap.add_argument("--dns", choices=("bind", "challtestsrv"), default="bind",
                    help="BIND with 300 s TTLs (default) or pebble-challtestsrv (TTL 0)")
    ap.add_argument("--poll-ms", type=float, default=20.0, help="longest wait between polls (default 20)")
    ap.add_argument("--kakuin-tls", nargs="?", const="nginx", default="", choices=("nginx", "socat"),
                    help="kakuin behind a TLS terminator (nginx, the default, or socat), as Pebble is "
                         "reached over TLS")
    ap.add_argument("--client", choices=("light", "certbot"), default="light",
                    help="the light asyncio client (default) or certbot's acme library, a thread per client")
    a = ap.parse_args()
    global POLL_SECONDS
    POLL_SECONDS = a.poll_ms / 1000
    work = Path(tempfile.mkdtemp(prefix="acme-load-"))
    dns_port, http01 = free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    srv = await start_responder(http01)
    bind = None
    if a.dns == "bind":
        # BIND 9 serving jp. with realistic TTLs: every order's name (a wildcard A,
        # no AAAA) and the CAA climb's parents (bench.ac.jp, ac.jp, jp: no CAA).
        from tests.bind import BindServer, Zone

        zone = Zone("jp", records=["$TTL 300", "*.bench.ac.jp. IN A 127.0.0.1", "bench.ac.jp. IN A 127.0.0.1"])
        bind = BindServer(work / "bind", [zone], dns_port).start()
    else:
        procs.append(subprocess.Popen(
            ["pebble-challtestsrv", "-dns01", f"127.0.0.1:{dns_port}", "-defaultIPv4", "127.0.0.1",
             "-defaultIPv6", "", "-http01", "", "-https01", "", "-tlsalpn01", "",
             "-management", f"127.0.0.1:{free_port()}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    runs: dict[str, list[dict[str, float]]] = {}
    schema = None
    try:
        time.sleep(0.5)
        # (label, directory, pid, EAB credentials per round or None)
        servers: list[tuple[str, str, list[int], list[list[tuple[str, str]]] | None, bool]] = []
        p, directory = start_pebble(work, dns_port, http01)
        procs.append(p)
        servers.append(("pebble", directory, [p.pid], None, False))
        targets: list[tuple[str, str | None]] = [] if a.no_sqlite else [("kakuin sqlite", None)]
        if not a.no_pg:
            url, schema = pg_schema_url(a.pg)
            targets.append(("kakuin postgresql", url))
        for label, db_url in targets:
            ps, directory, creds = start_kakuin(work, dns_port, http01, db_url, a.c * (a.rounds + 1), a.workers,
                                                not a.no_lint, a.kakuin_tls)
            procs += ps
            per_round = [creds[i * a.c:(i + 1) * a.c] for i in range(a.rounds + 1)]
            servers.append((label + (f" ({a.kakuin_tls})" if a.kakuin_tls else ""), directory,
                            [p.pid for p in ps], per_round, not a.kakuin_tls))
        for label, directory, _pid, creds, verify in servers:  # warm-up: accounts, key loading, caches
            await load(directory, min(a.n, 2 * a.c), a.c, creds[0] if creds else None, f"{label} (warm-up)",
                       verify=verify, client=a.client)
        for r in range(a.rounds):
            for label, directory, pid, creds, verify in servers:
                res = await load(directory, a.n, a.c, creds[r + 1] if creds else None, f"{label} #{r + 1}",
                                 verify=verify, server_pid=pid, client=a.client)
                runs.setdefault(label, []).append(res)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        srv.close()
        if bind is not None:
            bind.stop()
        if schema:
            drop_schema(a.pg, schema)
    med = {label: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for label, rs in runs.items()}
    peb = runs["pebble"]
    print(f"\nmedians over {a.rounds} rounds ({a.client} client; kakuin: {a.workers} worker(s), "
          f"lint {'off' if a.no_lint else 'on'}):")
    for label, m in med.items():
        line = (f"{label:18s} {m['certs_per_s']:7.2f} certs/s   p50 {m['p50'] * 1000:6.0f} ms   "
                f"p95 {m['p95'] * 1000:6.0f} ms   server CPU {m['cpu_ms_per_order']:5.1f} ms/order   "
                f"client CPU {m['client_cpu_ms_per_order']:4.1f} ms/order   {m['requests_per_order']:4.1f} req/order")
        if label != "pebble":
            rs = runs[label]
            rate = statistics.median(r["certs_per_s"] / pb["certs_per_s"] for r, pb in zip(rs, peb, strict=True))
            p50 = statistics.median(r["p50"] / pb["p50"] for r, pb in zip(rs, peb, strict=True))
            line += f"   vs Pebble (median of per-round ratios): {rate:.2f}× certs/s, {p50:.2f}× p50"
        print(line)
    print("JSON " + json.dumps({"n": a.n, "c": a.c, "client": a.client, "workers": a.workers, "rounds": a.rounds,
                               "lint": not a.no_lint, "runs": runs, "medians": med}))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
