"""A throwaway SoftHSM2 token for tests (a helper, not a test module).

SoftHSM2 is a hard test requirement: CI installs it (Debian: ``apt-get install
softhsm2``), so a missing ``softhsm2-util`` or module FAILS the test instead of
skipping it, and a broken CI image cannot silently drop the HSM tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pkcs11
import pytest

TOKEN_LABEL = "kakuin-test"
USER_PIN = "1234"
SO_PIN = "5678"

# Debian/Ubuntu put the module in /usr/lib/softhsm (a symlink into the multiarch
# dir); Fedora and source builds use the others. SOFTHSM2_MODULE overrides.
_MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)


def softhsm_module() -> str:
    override = os.environ.get("SOFTHSM2_MODULE")
    candidates = (override,) if override else _MODULE_CANDIDATES
    for path in candidates:
        if path and Path(path).is_file():
            return path
    pytest.fail(
        f"SoftHSM2 PKCS#11 module not found (looked at {', '.join(candidates)}); "
        "install softhsm2 (apt-get install softhsm2) or set SOFTHSM2_MODULE",
        pytrace=False,
    )


def make_token(tmp_path: Path) -> tuple[str, str, str, dict[str, str]]:
    """Initialise a fresh token under ``tmp_path``.

    Returns (module_path, token_label, user_pin, env). Sets SOFTHSM2_CONF in
    ``os.environ`` because the module reads it in-process at C_Initialize; the
    caller restores it when done."""
    util = shutil.which("softhsm2-util")
    if util is None:
        pytest.fail(
            "softhsm2-util not found on PATH: the PKCS#11 tests need SoftHSM2 "
            "(apt-get install softhsm2)",
            pytrace=False,
        )
    module = softhsm_module()
    tokens = tmp_path / "tokens"
    tokens.mkdir(parents=True, exist_ok=True)
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\n"
        "objectstore.backend = file\n"
        "log.level = ERROR\n"
        "slots.removable = false\n"
    )
    os.environ["SOFTHSM2_CONF"] = str(conf)
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    # fmt: off
    result = subprocess.run(
        [util, "--init-token", "--free", "--label", TOKEN_LABEL,
         "--pin", USER_PIN, "--so-pin", SO_PIN],
        env=env, capture_output=True, text=True, check=False,
    )
    # fmt: on
    if result.returncode != 0:
        pytest.fail(
            f"softhsm2-util --init-token failed ({result.returncode}): "
            f"{(result.stderr or result.stdout).strip()}",
            pytrace=False,
        )
    # SoftHSM reads SOFTHSM2_CONF and scans its token dir only at C_Initialize.
    # If this process already loaded the module (an earlier token), unload it so
    # the next pkcs11.lib() initialises afresh and sees this token. Sessions
    # opened before are dead after this: close backends between tokens.
    pkcs11.unload(module)
    return module, TOKEN_LABEL, USER_PIN, env
