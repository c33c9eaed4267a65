// kakuin: enrollment in the browser (TSV download method 3, ブラウザ個別).
//
// Makes an ECDSA P-256 key pair with WebCrypto, sends only a PKCS#10 CSR
// (RFC 2986) to the server, and builds the PKCS#12 (RFC 7292) here under the
// password the subscriber types: the private key and the password never leave
// the browser. No dependencies; a small DER encoder below.
//
// PKCS#12 layout (what OpenSSL 3 writes with -keypbe/-certpbe AES-256-CBC and
// -macalg sha256):
//   PFX { version 3, authSafe data { EncryptedData(cert bags), Data(shrouded key bag) },
//         MacData { HMAC-SHA256, salt, iterations } }
// Both bags are encrypted with PBES2 (RFC 8018 §6.2: PBKDF2-HMAC-SHA256,
// AES-256-CBC). The MAC key comes from the RFC 7292 Appendix B.2 KDF with
// SHA-256 (ID 3), over the password as a BMPString with its two zero bytes.
"use strict";

(function (root) {
  const subtle = root.crypto.subtle;
  const te = new TextEncoder();

  // -- DER (X.690) -------------------------------------------------------------
  function concat(...parts) {
    const n = parts.reduce((a, p) => a + p.length, 0);
    const out = new Uint8Array(n);
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
  function lengthOctets(n) {
    if (n < 0x80) return [n];
    const b = [];
    for (; n > 0; n = Math.floor(n / 256)) b.unshift(n & 0xff);
    return [0x80 | b.length, ...b];
  }
  function tlv(tag, ...content) {
    const body = concat(...content);
    return concat(new Uint8Array([tag, ...lengthOctets(body.length)]), body);
  }
  const seq = (...p) => tlv(0x30, ...p);
  const octets = (b) => tlv(0x04, b);
  const explicit = (n, ...p) => tlv(0xa0 + n, ...p);
  const NULL = new Uint8Array([0x05, 0x00]);
  function compare(a, b) {
    for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i] - b[i];
    return a.length - b.length;
  }
  // X.690 §11.6: the elements of a SET OF in DER are sorted by their encodings.
  const setOf = (...items) => tlv(0x31, ...items.slice().sort(compare));
  function integer(v) {
    let b;
    if (typeof v === "number") {
      b = [];
      do {
        b.unshift(v & 0xff);
        v = Math.floor(v / 256);
      } while (v > 0);
      b = new Uint8Array(b);
    } else {
      b = v; // unsigned big-endian
    }
    let i = 0;
    while (i < b.length - 1 && b[i] === 0) i++;
    b = b.slice(i);
    if (b[0] & 0x80) b = concat(new Uint8Array([0]), b);
    return tlv(0x02, b);
  }
  function oid(dotted) {
    const p = dotted.split(".").map(Number);
    const out = [40 * p[0] + p[1]];
    for (const x of p.slice(2)) {
      const enc = [x & 0x7f];
      for (let y = Math.floor(x / 128); y > 0; y = Math.floor(y / 128)) enc.unshift((y & 0x7f) | 0x80);
      out.push(...enc);
    }
    return tlv(0x06, new Uint8Array(out));
  }
  function bmpBytes(s) {
    const out = new Uint8Array(s.length * 2);
    for (let i = 0; i < s.length; i++) {
      out[2 * i] = s.charCodeAt(i) >> 8;
      out[2 * i + 1] = s.charCodeAt(i) & 0xff;
    }
    return out;
  }

  const OID = {
    ecdsaWithSHA256: "1.2.840.10045.4.3.2",
    data: "1.2.840.113549.1.7.1",
    encryptedData: "1.2.840.113549.1.7.6",
    pbes2: "1.2.840.113549.1.5.13",
    pbkdf2: "1.2.840.113549.1.5.12",
    hmacWithSHA256: "1.2.840.113549.2.9",
    aes256CBC: "2.16.840.1.101.3.4.1.42",
    sha256: "2.16.840.1.101.3.4.2.1",
    shroudedKeyBag: "1.2.840.113549.1.12.10.1.2",
    certBag: "1.2.840.113549.1.12.10.1.3",
    x509Certificate: "1.2.840.113549.1.9.22.1",
    friendlyName: "1.2.840.113549.1.9.20",
    localKeyId: "1.2.840.113549.1.9.21",
  };

  const random = (n) => root.crypto.getRandomValues(new Uint8Array(n));
  const digest = async (alg, data) => new Uint8Array(await subtle.digest(alg, data));

  // -- key pair and CSR (RFC 2986) ----------------------------------------------
  async function generateKey() {
    // Extractable: the browser must write the key into the PKCS#12 it saves.
    return subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]);
  }

  // WebCrypto signs ECDSA as r || s; X.509 wants Ecdsa-Sig-Value ::= SEQUENCE { r, s }.
  function ecdsaSigValue(raw) {
    const half = raw.length / 2;
    return seq(integer(raw.slice(0, half)), integer(raw.slice(half)));
  }

  async function makeCsr(keys) {
    const spki = new Uint8Array(await subtle.exportKey("spki", keys.publicKey));
    // The subject is left empty: the server uses the DN the officer's application was checked with.
    const info = seq(integer(0), seq(), spki, explicit(0));
    const sig = new Uint8Array(await subtle.sign({ name: "ECDSA", hash: "SHA-256" }, keys.privateKey, info));
    return seq(info, seq(oid(OID.ecdsaWithSHA256)), tlv(0x03, new Uint8Array([0]), ecdsaSigValue(sig)));
  }

  // -- PKCS#12 (RFC 7292) -------------------------------------------------------
  const PBKDF2_ROUNDS = 100000; // as kakuin.ra.pkcs12.KDF_ROUNDS
  const MAC_ROUNDS = 2048; // OpenSSL's PKCS12_DEFAULT_ITER

  async function pbes2(password, plaintext) {
    const salt = random(16);
    const iv = random(16);
    const base = await subtle.importKey("raw", te.encode(password), "PBKDF2", false, ["deriveKey"]);
    const key = await subtle.deriveKey(
      { name: "PBKDF2", salt, iterations: PBKDF2_ROUNDS, hash: "SHA-256" },
      base,
      { name: "AES-CBC", length: 256 },
      false,
      ["encrypt"],
    );
    const ciphertext = new Uint8Array(await subtle.encrypt({ name: "AES-CBC", iv }, key, plaintext));
    const algorithm = seq(
      oid(OID.pbes2),
      seq(
        seq(oid(OID.pbkdf2), seq(octets(salt), integer(PBKDF2_ROUNDS), seq(oid(OID.hmacWithSHA256), NULL))),
        seq(oid(OID.aes256CBC), octets(iv)),
      ),
    );
    return { algorithm, ciphertext };
  }

  // RFC 7292 Appendix B.2 with SHA-256 (u = 32, v = 64); n <= u, so one block A_1 = H^c(D || I).
  async function pkcs12Kdf(password, salt, id, iterations, n) {
    const v = 64;
    const pw = concat(bmpBytes(password), new Uint8Array(2));
    const fill = (src) => {
      if (src.length === 0) return new Uint8Array(0);
      const out = new Uint8Array(v * Math.ceil(src.length / v));
      for (let i = 0; i < out.length; i++) out[i] = src[i % src.length];
      return out;
    };
    let a = concat(new Uint8Array(v).fill(id), fill(salt), fill(pw));
    for (let i = 0; i < iterations; i++) a = await digest("SHA-256", a);
    return a.slice(0, n);
  }

  async function makePkcs12({ privateKey, certificate, chain, password, friendlyName }) {
    const pkcs8 = new Uint8Array(await subtle.exportKey("pkcs8", privateKey));
    const keyId = await digest("SHA-1", certificate); // as OpenSSL: localKeyId = SHA-1 of the certificate
    const attributes = setOf(
      seq(oid(OID.localKeyId), setOf(octets(keyId))),
      seq(oid(OID.friendlyName), setOf(tlv(0x1e, bmpBytes(friendlyName)))),
    );
    const shrouded = await pbes2(password, pkcs8);
    const keyBag = seq(
      oid(OID.shroudedKeyBag),
      explicit(0, seq(shrouded.algorithm, octets(shrouded.ciphertext))),
      attributes,
    );
    const certBag = (der, attrs) =>
      seq(
        oid(OID.certBag),
        explicit(0, seq(oid(OID.x509Certificate), explicit(0, octets(der)))),
        ...(attrs ? [attrs] : []),
      );
    const certSafe = seq(certBag(certificate, attributes), ...chain.map((c) => certBag(c)));
    const encrypted = await pbes2(password, certSafe);
    const authSafe = seq(
      seq(
        oid(OID.encryptedData),
        explicit(0, seq(integer(0), seq(oid(OID.data), encrypted.algorithm, tlv(0x80, encrypted.ciphertext)))),
      ),
      seq(oid(OID.data), explicit(0, octets(seq(keyBag)))),
    );
    const macSalt = random(16);
    const macKey = await pkcs12Kdf(password, macSalt, 3, MAC_ROUNDS, 32);
    const hmac = await subtle.importKey("raw", macKey, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    const mac = new Uint8Array(await subtle.sign("HMAC", hmac, authSafe));
    return seq(
      integer(3),
      seq(oid(OID.data), explicit(0, octets(authSafe))),
      seq(seq(seq(oid(OID.sha256), NULL), octets(mac)), octets(macSalt), integer(MAC_ROUNDS)),
    );
  }

  const b64 = (bytes) => {
    let s = "";
    for (const b of bytes) s += String.fromCharCode(b);
    return root.btoa(s);
  };
  const unb64 = (text) => Uint8Array.from(root.atob(text), (c) => c.charCodeAt(0));

  root.KakuinEnroll = { generateKey, makeCsr, makePkcs12, pkcs12Kdf, b64, unb64 };

  // -- the page -----------------------------------------------------------------
  if (typeof document === "undefined") return;

  function wire() {
    const main = document.getElementById("enroll");
    const form = document.getElementById("enroll-form");
    if (!main || !form) return;
    const status = document.getElementById("status");
    const button = document.getElementById("go");
    const say = (text, error) => {
      status.textContent = text;
      status.className = error ? "error" : "";
    };
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const pw = document.getElementById("pw").value;
      const again = document.getElementById("pw2");
      if (pw.length < 8) return say("8文字以上で入力してください。 / Use 8 characters or more.", true);
      if (again && again.value !== pw)
        return say("パスワードが一致しません。 / The passwords differ.", true);
      button.disabled = true;
      try {
        say("鍵ペアを生成しています… / Making the key pair…");
        const keys = await generateKey();
        const csr = await makeCsr(keys);
        say("証明書を発行しています… / Issuing the certificate…");
        const response = await fetch(root.location.pathname, {
          method: "POST",
          headers: { "Content-Type": "application/json", Accept: "application/json" },
          body: JSON.stringify({ csr: b64(csr) }),
          credentials: "omit",
        });
        const answer = await response.json();
        if (!response.ok) {
          say(`${answer.detail_ja || ""} / ${answer.detail || response.status}`, true);
          button.disabled = response.status === 410 || response.status === 404;
          return;
        }
        say("PKCS#12ファイルを作成しています… / Making the PKCS#12 file…");
        const p12 = await makePkcs12({
          privateKey: keys.privateKey,
          certificate: unb64(answer.certificate),
          chain: answer.chain.map(unb64),
          password: pw,
          friendlyName: main.dataset.friendlyName || answer.friendly_name,
        });
        const url = URL.createObjectURL(new Blob([p12], { type: "application/x-pkcs12" }));
        const link = document.getElementById("save");
        link.href = url;
        link.download = answer.filename || main.dataset.filename;
        document.getElementById("result").hidden = false;
        say(
          `証明書(シリアル番号 ${answer.serial})を発行しました。PKCS#12ファイルを保存してください。 / ` +
            `Certificate ${answer.serial} issued. Save the PKCS#12 file.`,
        );
        link.click();
      } catch (e) {
        say(`エラー / Error: ${e && e.message ? e.message : e}`, true);
        button.disabled = false;
      }
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", wire);
  else wire();
})(globalThis);
