#!/usr/bin/python3
"""Writes test/data/payload_kat.h: known answers for test/test_payload.c.

The numbers come from python3-cryptography (OpenSSL), an implementation
independent of the libgcrypt code under test. Inputs are derived from fixed
labels with SHA-256, so running this again gives the same header.

    /usr/bin/python3 test/kat/gen_payload_kat.py > test/data/payload_kat.h
"""

import hashlib
import sys

from cryptography.hazmat.primitives import hashes, hmac, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def det(label, n):
    """n reproducible pseudo-random bytes named by label."""
    out = b""
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"{label}/{counter}".encode()).digest()
        counter += 1
    return out[:n]


class Emitter:
    def __init__(self):
        self.arrays = []

    def array(self, name, data):
        """Emit a byte array; empty data gets one dummy byte so the pointer is
        valid (the length recorded next to it stays 0)."""
        body = data if data else b"\x00"
        lines = []
        for i in range(0, len(body), 12):
            chunk = body[i:i + 12]
            lines.append("\t" + " ".join(f"0x{b:02x}," for b in chunk))
        self.arrays.append(f"static const uint8_t {name}[] = {{\n" + "\n".join(lines) + "\n};\n")
        return name


def aes(key):
    return algorithms.AES(key)


def gcm_vectors(em):
    rows = []
    n = 0
    for iv_len in (12, 16):
        for pt_len in (0, 1, 15, 16, 17, 200, 1000):
            label = f"gcm/{iv_len}/{pt_len}"
            key = det(label + "/key", 16)
            iv = det(label + "/iv", iv_len)
            pt = det(label + "/pt", pt_len)
            enc = Cipher(aes(key), modes.GCM(iv)).encryptor()
            ct = enc.update(pt) + enc.finalize()
            tag = enc.tag
            p = f"kat_gcm_{n}"
            rows.append((f'"AES-128-GCM iv {iv_len} pt {pt_len}"', em.array(p + "_key", key),
                         em.array(p + "_iv", iv), str(iv_len), em.array(p + "_pt", pt),
                         str(pt_len), em.array(p + "_ct", ct), em.array(p + "_tag", tag)))
            n += 1
    return rows


def hmac_vectors(em):
    rows = []
    n = 0
    # Keys longer than the 64-byte block are hashed first (RFC 2104).
    for key_len, msg_len in ((0, 0), (1, 1), (20, 50), (32, 32), (32, 64), (64, 63),
                             (65, 65), (100, 0), (131, 1000), (16, 129)):
        label = f"hmac/{key_len}/{msg_len}"
        key = det(label + "/key", key_len)
        msg = det(label + "/msg", msg_len)
        h = hmac.HMAC(key, hashes.SHA256())
        h.update(msg)
        mac = h.finalize()
        p = f"kat_hmac_{n}"
        rows.append((f'"HMAC-SHA256 key {key_len} msg {msg_len}"', em.array(p + "_key", key),
                     str(key_len), em.array(p + "_msg", msg), str(msg_len),
                     em.array(p + "_mac", mac)))
        n += 1
    return rows


def sha512_vectors(em):
    rows = []
    for n, msg_len in enumerate((0, 3, 111, 112, 127, 128, 1000)):
        msg = det(f"sha512/{msg_len}", msg_len)
        h = hashes.Hash(hashes.SHA512())
        h.update(msg)
        digest = h.finalize()
        p = f"kat_sha512_{n}"
        rows.append((f'"SHA-512 msg {msg_len}"', em.array(p + "_msg", msg), str(msg_len),
                     em.array(p + "_digest", digest)))
    return rows


def cbc_vectors(em):
    rows = []
    n = 0
    for key_len in (16, 32):
        for pt_len in (0, 1, 15, 16, 17, 32, 48, 100):
            label = f"cbc/{key_len}/{pt_len}"
            key = det(label + "/key", key_len)
            iv = det(label + "/iv", 16)
            pt = det(label + "/pt", pt_len)
            padder = padding.PKCS7(128).padder()
            padded = padder.update(pt) + padder.finalize()
            enc = Cipher(aes(key), modes.CBC(iv)).encryptor()
            ct = enc.update(padded) + enc.finalize()
            p = f"kat_cbc_{n}"
            rows.append((f'"AES-{key_len * 8}-CBC-PKCS7 pt {pt_len}"', em.array(p + "_key", key),
                         str(key_len), em.array(p + "_iv", iv), em.array(p + "_pt", pt),
                         str(pt_len), em.array(p + "_ct", ct), str(len(ct))))
            n += 1
    return rows


def ctr_vectors(em):
    rows = []
    n = 0
    for key_len in (16, 32):
        for pt_len, iv_kind in ((0, "rand"), (1, "rand"), (16, "rand"), (33, "rand"),
                                (100, "carry64"), (48, "wrap128")):
            label = f"ctr/{key_len}/{pt_len}/{iv_kind}"
            key = det(label + "/key", key_len)
            if iv_kind == "rand":
                iv = det(label + "/iv", 16)
            elif iv_kind == "carry64":
                # The low 64 bits overflow after one block: the carry must
                # reach the high half (a 128-bit big-endian counter).
                iv = det(label + "/iv", 8) + b"\xff" * 8
            else:
                iv = b"\xff" * 15 + b"\xfe"
            pt = det(label + "/pt", pt_len)
            enc = Cipher(aes(key), modes.CTR(iv)).encryptor()
            ct = enc.update(pt) + enc.finalize()
            p = f"kat_ctr_{n}"
            rows.append((f'"AES-{key_len * 8}-CTR pt {pt_len} iv {iv_kind}"',
                         em.array(p + "_key", key), str(key_len), em.array(p + "_iv", iv),
                         em.array(p + "_pt", pt), str(pt_len), em.array(p + "_ct", ct),
                         str(len(ct))))
            n += 1
    return rows


def badpad_vectors(em):
    """CBC ciphertexts whose decryption has broken PKCS#7 padding, made by
    encrypting hand-built last blocks without padding."""
    key = det("badpad/key", 32)
    iv = det("badpad/iv", 16)
    em.array("kat_badpad_key", key)
    em.array("kat_badpad_iv", iv)

    def raw(blocks):
        enc = Cipher(aes(key), modes.CBC(iv)).encryptor()
        return enc.update(blocks) + enc.finalize()

    body = det("badpad/body", 16)
    cases = [
        ("pad byte 0", body + det("badpad/b0", 15) + b"\x00"),
        ("pad byte 17", body + b"\x11" * 16),
        ("pad byte 255", body + det("badpad/b255", 15) + b"\xff"),
        ("pad 4 with one byte 5", body + det("badpad/b4", 12) + b"\x04\x04\x05\x04"),
        ("pad 2 with one byte 1", body + det("badpad/b2", 14) + b"\x01\x02"),
        ("pad 16 with first byte 15", body + b"\x0f" + b"\x10" * 15),
        ("pad 16 with a 0 inside", body + b"\x10" * 7 + b"\x00" + b"\x10" * 8),
    ]
    rows = []
    n = 0
    for name, pt in cases:
        ct = raw(pt)
        p = f"kat_badpad_{n}"
        rows.append((f'"{name}"', em.array(p + "_ct", ct), str(len(ct))))
        n += 1
    # Lengths that are not whole blocks, cut from a valid ciphertext, which
    # is also kept whole as the control that key and IV are right.
    valid_pt = det("badpad/valid", 20)
    padder = padding.PKCS7(128).padder()
    valid = raw(padder.update(valid_pt) + padder.finalize())
    control = ('"valid control"', "kat_badpad_key", "32", "kat_badpad_iv",
               em.array("kat_badpad_valid_pt", valid_pt), str(len(valid_pt)),
               em.array("kat_badpad_valid_ct", valid), str(len(valid)))
    for name, length in (("length 31", 31), ("length 17", 17), ("length 15", 15),
                         ("length 0", 0)):
        p = f"kat_badpad_{n}"
        rows.append((f'"{name}"', em.array(p + "_ct", valid[:length]), str(length)))
        n += 1
    return control, rows


def hkdf_vectors(em):
    """HKDF-SHA256 (RFC 5869), as the Signal library's version 3 KDF."""
    rows = []
    for n, (ikm_len, salt_len, info_len, okm_len) in enumerate(
            ((32, 32, 14, 64), (22, 13, 10, 42), (80, 80, 80, 82), (32, 0, 0, 32))):
        label = f"hkdf/{n}"
        ikm = det(label + "/ikm", ikm_len)
        salt = det(label + "/salt", salt_len)
        info = det(label + "/info", info_len)
        okm = HKDF(algorithm=hashes.SHA256(), length=okm_len,
                   salt=salt if salt_len else None, info=info).derive(ikm)
        p = f"kat_hkdf_{n}"
        rows.append((f'"HKDF-SHA256 ikm {ikm_len} salt {salt_len} info {info_len}"',
                     em.array(p + "_ikm", ikm), str(ikm_len), em.array(p + "_salt", salt),
                     str(salt_len), em.array(p + "_info", info), str(info_len),
                     em.array(p + "_okm", okm), str(okm_len)))
    return rows


def table(ctype, name, rows):
    out = [f"static const struct {ctype} {name}[] = {{"]
    for row in rows:
        out.append("\t{ " + ", ".join(row) + " },")
    out.append("};\n")
    return "\n".join(out)


def main():
    em = Emitter()
    gcm = gcm_vectors(em)
    hm = hmac_vectors(em)
    sha = sha512_vectors(em)
    cbc = cbc_vectors(em)
    ctr = ctr_vectors(em)
    bp_control, bp = badpad_vectors(em)
    hk = hkdf_vectors(em)

    w = sys.stdout.write
    w("/*\n * Known answers for test_payload.c, generated by test/kat/gen_payload_kat.py\n"
      " * with python3-cryptography (OpenSSL). Do not edit; run the script again.\n */\n")
    w("#ifndef PURPLE_OMEMO_PAYLOAD_KAT_H\n#define PURPLE_OMEMO_PAYLOAD_KAT_H\n\n")
    w("#include <stddef.h>\n#include <stdint.h>\n\n")
    w("struct kat_gcm {\n\tconst char *name;\n\tconst uint8_t *key; /* 16 bytes */\n"
      "\tconst uint8_t *iv;\n\tsize_t iv_len;\n\tconst uint8_t *pt;\n\tsize_t pt_len;\n"
      "\tconst uint8_t *ct; /* pt_len bytes */\n\tconst uint8_t *tag; /* 16 bytes */\n};\n\n")
    w("struct kat_hmac {\n\tconst char *name;\n\tconst uint8_t *key;\n\tsize_t key_len;\n"
      "\tconst uint8_t *msg;\n\tsize_t msg_len;\n\tconst uint8_t *mac; /* 32 bytes */\n};\n\n")
    w("struct kat_sha512 {\n\tconst char *name;\n\tconst uint8_t *msg;\n\tsize_t msg_len;\n"
      "\tconst uint8_t *digest; /* 64 bytes */\n};\n\n")
    w("struct kat_cipher {\n\tconst char *name;\n\tconst uint8_t *key;\n\tsize_t key_len;\n"
      "\tconst uint8_t *iv; /* 16 bytes */\n\tconst uint8_t *pt;\n\tsize_t pt_len;\n"
      "\tconst uint8_t *ct;\n\tsize_t ct_len;\n};\n\n")
    w("/* AES-256-CBC under kat_badpad_key / kat_badpad_iv. */\n")
    w("struct kat_badpad {\n\tconst char *name;\n\tconst uint8_t *ct;\n\tsize_t ct_len;\n};\n\n")
    w("struct kat_hkdf {\n\tconst char *name;\n\tconst uint8_t *ikm;\n\tsize_t ikm_len;\n"
      "\tconst uint8_t *salt;\n\tsize_t salt_len;\n\tconst uint8_t *info;\n\tsize_t info_len;\n"
      "\tconst uint8_t *okm;\n\tsize_t okm_len;\n};\n\n")
    for a in em.arrays:
        w(a)
    w("\n")
    w(table("kat_gcm", "kat_gcm", gcm))
    w(table("kat_hmac", "kat_hmac", hm))
    w(table("kat_sha512", "kat_sha512", sha))
    w(table("kat_cipher", "kat_cbc", cbc))
    w(table("kat_cipher", "kat_ctr", ctr))
    w(table("kat_badpad", "kat_badpad", bp))
    w("static const struct kat_cipher kat_badpad_valid = { " + ", ".join(bp_control) + " };\n\n")
    w(table("kat_hkdf", "kat_hkdf", hk))
    w("#endif\n")


if __name__ == "__main__":
    main()
