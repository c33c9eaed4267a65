"""The BIND fixture itself: independent instances, failures that say what is wrong."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from kakuin.clock import SystemClock
from kakuin.config import VAConfig
from kakuin.va import ValidationAuthority
from tests import bind as bindmod
from tests.bind import BindServer, Zone


def test_two_instances_give_different_answers(tmp_path: Path) -> None:
    # Issue #6 will run one instance per perspective with different data.
    a = BindServer(tmp_path / "a", [Zone("test.", ['x IN CAA 0 issue "kakuin.example"'])])
    b = BindServer(tmp_path / "b", [Zone("test.", ['x IN CAA 0 issue "other-ca.example"'])])
    with a, b:
        assert a.port != b.port and a.tsig_secret != b.tsig_secret
        results = [asyncio.run(ValidationAuthority(VAConfig(resolver=s.resolver, dnssec=False), SystemClock())
                               .check_caa("x.test", account_uri=None, method=None,
                                          wildcard=False)).ok for s in (a, b)]
        assert results == [True, False]
        pid = a.proc.pid
    assert a.proc is None and b.proc is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_add_zone_at_runtime(tmp_path: Path) -> None:
    with BindServer(tmp_path, [Zone("test.")]) as server:
        server.add_zone(Zone("example.", ["www IN A 127.0.0.1"]))
        assert server.query("www.example", "A").answer
        server.add("new.example", "TXT", '"dynamic"')
        assert server.query("new.example", "TXT").answer
        with pytest.raises(ValueError, match="in no zone"):
            server.add("www.elsewhere", "A", "127.0.0.1")


def test_update_without_the_key_is_refused(tmp_path: Path) -> None:
    import dns.query
    import dns.rcode
    import dns.update

    with BindServer(tmp_path, [Zone("test.")]) as server:
        update = dns.update.UpdateMessage("test.")
        update.add("evil.test.", 60, "A", "127.0.0.1")
        response = dns.query.tcp(update, server.address, port=server.port, timeout=5)
        assert response.rcode() == dns.rcode.REFUSED


def test_missing_named_fails_with_instructions(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bindmod, "NAMED", str(tmp_path / "no-named"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match="apt-get install bind9"):
        BindServer(tmp_path / "w", [Zone("test.")]).start()


def test_startup_failure_shows_the_log(tmp_path: Path) -> None:
    server = BindServer(tmp_path, [Zone("test.")], options="no-such-option yes;")
    with pytest.raises(RuntimeError, match="named exited during start-up"):
        server.start()
    assert server.proc is None


def test_apparmor_copy_only_when_enabled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bindmod, "apparmor_enabled", lambda: False)
    assert bindmod.unconfined_copy("/usr/sbin/named", tmp_path) == "/usr/sbin/named"
    monkeypatch.setattr(bindmod, "apparmor_enabled", lambda: True)
    fake = tmp_path / "src"
    fake.write_text("#!/bin/sh\n")
    assert bindmod.unconfined_copy(str(fake), tmp_path) == str(tmp_path / "named")
