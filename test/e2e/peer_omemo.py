"""Legacy OMEMO (eu.siacs.conversations.axolotl) glue for the end-to-end peer.

Owns everything between python-omemo's SessionManager and XML: the JSON
key/value storage, our own serialisers and parsers for device lists, bundles
and <encrypted> elements (python-oldmemo's etree helpers cost half a second of
schema compilation at start-up, and their schemas reject inputs that deployed
clients send), and the SessionManager subclass whose network hooks call an
object supplied by the XMPP side. Nothing here knows about slixmpp.
"""

import base64
import binascii
import json
import os
import xml.etree.ElementTree as ET
from typing import Any, Dict, FrozenSet, List, Optional, Tuple

import omemo
from omemo import DeviceInformation, Just, Maybe, Nothing, Storage, TrustLevel
import oldmemo
from oldmemo.oldmemo import (
    BundleImpl,
    ContentImpl,
    EncryptedKeyMaterialImpl,
    KeyExchangeImpl,
)
import x3dh
import xeddsa

Oldmemo = oldmemo.Oldmemo  # the backend class, for the XMPP side

NS = "eu.siacs.conversations.axolotl"
NODE_DEVICELIST = NS + ".devicelist"
NODE_BUNDLE_PREFIX = NS + ".bundles:"
DEVICE_ID_MAX = 2**31 - 1

# Trust level names stored by python-omemo per identity key.
TRUST_BLIND = "blind"
TRUST_TRUSTED = "trusted"
TRUST_UNDECIDED = "undecided"
TRUST_DISTRUSTED = "distrusted"


def q(tag: str) -> str:
    return "{%s}%s" % (NS, tag)


class WireError(ValueError):
    """An element that does not follow the legacy OMEMO wire format."""


def b64decode(text: Optional[str], what: str) -> bytes:
    # Some clients wrap base64 at 76 columns.
    data = "".join((text or "").split())
    if not data:
        raise WireError(f"{what} is empty")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as e:
        raise WireError(f"{what} is not base64: {e}") from e


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def parse_uint(text: Optional[str], what: str, low: int = 0, high: int = 2**32 - 1) -> int:
    try:
        value = int((text or "").strip(), 10)
    except ValueError as e:
        raise WireError(f"{what} is not a number: {text!r}") from e
    if not low <= value <= high:
        raise WireError(f"{what} out of range: {value}")
    return value


def parse_xs_boolean(text: Optional[str]) -> bool:
    value = (text or "").strip()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise WireError(f"not an xs:boolean: {text!r}")


def curve_key_from_wire(data: bytes, what: str) -> bytes:
    # libsignal's DJB type byte 0x05, then the 32-byte X25519 key.
    if len(data) != 33 or data[0] != 0x05:
        raise WireError(f"{what}: expected 33 bytes starting with 0x05, got {len(data)}")
    return data[1:]


def curve_key_to_wire(key: bytes) -> bytes:
    return b"\x05" + key


def fingerprint(identity_key_ed25519: bytes) -> str:
    """The legacy fingerprint: hex of the X25519 form of the identity key."""
    return xeddsa.ed25519_pub_to_curve25519_pub(identity_key_ed25519).hex()


# ---------------------------------------------------------------- device list

def serialize_device_list(device_ids) -> ET.Element:
    root = ET.Element(q("list"))
    for device_id in sorted(device_ids):
        ET.SubElement(root, q("device"), {"id": str(device_id)})
    return root


def parse_device_list(element: Optional[ET.Element]) -> Dict[int, Optional[str]]:
    """Ids from a <list>; an entry with a bad id is skipped, not fatal, so one
    broken client on an account does not hide the others."""
    if element is None:
        return {}
    if element.tag != q("list"):
        raise WireError(f"expected <list xmlns='{NS}'>, got {element.tag}")
    devices: Dict[int, Optional[str]] = {}
    for child in element.findall(q("device")):
        try:
            devices[parse_uint(child.get("id"), "device id", 1, DEVICE_ID_MAX)] = None
        except WireError:
            continue
    return devices


# --------------------------------------------------------------------- bundle

def serialize_bundle(bundle: BundleImpl) -> ET.Element:
    inner = bundle.bundle
    # python-omemo keeps the identity key in Ed25519 form; libsignal peers
    # expect X25519 and recover the Ed25519 sign bit from the top bit of the
    # signature's last byte (that is how XEdDSA verification works there).
    signature = bytearray(inner.signed_pre_key_sig)
    signature[63] |= inner.identity_key[31] & 0x80
    root = ET.Element(q("bundle"))
    spk = ET.SubElement(root, q("signedPreKeyPublic"), {"signedPreKeyId": str(bundle.signed_pre_key_id)})
    spk.text = b64encode(curve_key_to_wire(inner.signed_pre_key))
    ET.SubElement(root, q("signedPreKeySignature")).text = b64encode(bytes(signature))
    ET.SubElement(root, q("identityKey")).text = b64encode(
        curve_key_to_wire(xeddsa.ed25519_pub_to_curve25519_pub(inner.identity_key))
    )
    prekeys = ET.SubElement(root, q("prekeys"))
    for pre_key, pre_key_id in sorted(bundle.pre_key_ids.items(), key=lambda kv: kv[1]):
        ET.SubElement(prekeys, q("preKeyPublic"), {"preKeyId": str(pre_key_id)}).text = b64encode(
            curve_key_to_wire(pre_key)
        )
    return root


def parse_bundle(element: Optional[ET.Element], bare_jid: str, device_id: int) -> BundleImpl:
    if element is None or element.tag != q("bundle"):
        raise WireError("no <bundle> element")

    def one(tag: str) -> ET.Element:
        found = element.findall(q(tag))
        if len(found) != 1:
            raise WireError(f"bundle needs exactly one <{tag}>, has {len(found)}")
        return found[0]

    spk_elt = one("signedPreKeyPublic")
    spk = curve_key_from_wire(b64decode(spk_elt.text, "signedPreKeyPublic"), "signedPreKeyPublic")
    spk_id = parse_uint(spk_elt.get("signedPreKeyId"), "signedPreKeyId")
    signature = bytearray(b64decode(one("signedPreKeySignature").text, "signedPreKeySignature"))
    if len(signature) != 64:
        raise WireError(f"signedPreKeySignature: expected 64 bytes, got {len(signature)}")
    ik = curve_key_from_wire(b64decode(one("identityKey").text, "identityKey"), "identityKey")
    sign_bit = bool(signature[63] & 0x80)
    signature[63] &= 0x7F
    pre_key_ids: Dict[bytes, int] = {}
    for pk_elt in one("prekeys").findall(q("preKeyPublic")):
        key = curve_key_from_wire(b64decode(pk_elt.text, "preKeyPublic"), "preKeyPublic")
        pre_key_ids[key] = parse_uint(pk_elt.get("preKeyId"), "preKeyId")
    if not pre_key_ids:
        raise WireError("bundle has no prekeys")
    return BundleImpl(
        bare_jid,
        device_id,
        x3dh.Bundle(
            xeddsa.curve25519_pub_to_ed25519_pub(ik, sign_bit),
            spk,
            bytes(signature),
            frozenset(pre_key_ids),
        ),
        spk_id,
        pre_key_ids,
    )


# -------------------------------------------------------------------- message

# Deployed clients' deviations from the usual layout, which --quirk makes
# this peer reproduce so the other side's tolerance can be tested.
QUIRKS = {
    "no-prekey-attr": "omit prekey='true' on PreKeyWhisperMessages (lurch 0.7)",
    "iv-first": "put <iv> before the <key>s in the header (Dino)",
    "bundle-item-1": "publish the bundle under item id '1' (Dino)",
}


def serialize_message(message: omemo.Message, quirks: FrozenSet[str] = frozenset()) -> ET.Element:
    content = message.content
    assert isinstance(content, ContentImpl)
    root = ET.Element(q("encrypted"))
    header = ET.SubElement(root, q("header"), {"sid": str(message.device_id)})
    if "iv-first" in quirks:
        ET.SubElement(header, q("iv")).text = b64encode(content.initialization_vector)
    for key_material, key_exchange in sorted(message.keys, key=lambda k: k[0].device_id):
        assert isinstance(key_material, EncryptedKeyMaterialImpl)
        data = key_material.serialize()
        attrs = {"rid": str(key_material.device_id)}
        if key_exchange is not None:
            assert isinstance(key_exchange, KeyExchangeImpl)
            data, _ = key_exchange.serialize(data)
            if "no-prekey-attr" not in quirks:
                attrs["prekey"] = "true"
        ET.SubElement(header, q("key"), attrs).text = b64encode(data)
    if "iv-first" not in quirks:
        ET.SubElement(header, q("iv")).text = b64encode(content.initialization_vector)
    if not content.empty:
        ET.SubElement(root, q("payload")).text = b64encode(content.ciphertext)
    return root


class ParsedEncrypted:
    """An <encrypted> element taken apart, before any key is decoded."""

    def __init__(self, sid: int, iv: bytes, payload: Optional[bytes], keys: List[Tuple[int, bytes, Optional[bool]]]):
        self.sid = sid
        self.iv = iv
        self.payload = payload
        # (rid, raw key bytes, prekey attribute or None when absent)
        self.keys = keys

    def keys_for(self, device_id: int) -> List[Tuple[bytes, Optional[bool]]]:
        return [(data, prekey) for rid, data, prekey in self.keys if rid == device_id]

    def content(self) -> ContentImpl:
        if self.payload is None:
            return ContentImpl.make_empty()
        return ContentImpl(self.payload, self.iv)


def parse_encrypted(element: ET.Element) -> ParsedEncrypted:
    """Strict about what it uses, silent about elements it does not know."""
    headers = element.findall(q("header"))
    if len(headers) != 1:
        raise WireError(f"<encrypted> needs exactly one <header>, has {len(headers)}")
    header = headers[0]
    sid = parse_uint(header.get("sid"), "sid", 1, DEVICE_ID_MAX)
    ivs = header.findall(q("iv"))
    if len(ivs) != 1:
        raise WireError(f"<header> needs exactly one <iv>, has {len(ivs)}")
    iv = b64decode(ivs[0].text, "iv")
    payloads = element.findall(q("payload"))
    if len(payloads) > 1:
        raise WireError("more than one <payload>")
    payload = b64decode(payloads[0].text, "payload") if payloads else None
    keys = []
    for key in header.findall(q("key")):
        rid = parse_uint(key.get("rid"), "rid", 1, DEVICE_ID_MAX)
        prekey_attr = key.get("prekey")
        prekey = None if prekey_attr is None else parse_xs_boolean(prekey_attr)
        keys.append((rid, b64decode(key.text, "key"), prekey))
    return ParsedEncrypted(sid, iv, payload, keys)


def key_candidates(data: bytes, prekey: Optional[bool], own_jid: str, own_device: int,
                   sign_bit: bool) -> List[Tuple[EncryptedKeyMaterialImpl, Optional[KeyExchangeImpl], bool]]:
    """Ways to read one <key>: as the attribute says first, then (if the
    attribute is absent) as a prekey message too, since lurch 0.7 never sets
    it. Each entry is (key material, key exchange or None, is_prekey)."""
    out = []
    order = [True] if prekey else ([False, True] if prekey is None else [False])
    for as_prekey in order:
        try:
            if as_prekey:
                kex, inner = KeyExchangeImpl.parse(data, sign_bit)
                out.append((EncryptedKeyMaterialImpl.parse(inner, own_jid, own_device), kex, True))
            else:
                out.append((EncryptedKeyMaterialImpl.parse(data, own_jid, own_device), None, False))
        except Exception:  # a malformed reading is just not a candidate
            continue
    return out


# -------------------------------------------------------------------- storage

class JsonStorage(Storage):
    """python-omemo's key/value storage in one JSON file. Writes are
    collected in memory and written by flush(), which the caller runs after
    each complete operation: a first start stores a few hundred keys, and
    rewriting the file for each one would dominate start-up."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.data: Dict[str, Any] = {}
        self.dirty = False
        if os.path.exists(path):
            with open(path, "r", encoding="utf-8") as f:
                self.data = json.load(f)

    def flush(self) -> None:
        if not self.dirty:
            return
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.data, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self.dirty = False

    async def _load(self, key: str) -> Maybe[omemo.JSONType]:
        if key in self.data:
            return Just(self.data[key])
        return Nothing()

    async def _store(self, key: str, value: omemo.JSONType) -> None:
        self.data[key] = value
        self.dirty = True

    async def _delete(self, key: str) -> None:
        if key in self.data:
            del self.data[key]
            self.dirty = True


# ------------------------------------------------------------ session manager

def make_manager_class(net: Any, manual_trust: bool):
    """A SessionManager subclass bound to one network object.

    python-omemo calls its network hooks as static methods, so they reach the
    connection through this closure. `net` provides the coroutines
    upload_bundle(bundle), download_bundle(jid, id), delete_bundle(id),
    upload_device_list(ids), download_device_list(jid), send_message(msg, jid),
    each raising python-omemo's exceptions on failure.
    """

    class Manager(omemo.SessionManager):
        # While True, undecided devices count as distrusted so that encrypt()
        # leaves them out instead of failing the whole message; decryption
        # from them stays allowed. Only flipped under the caller's lock.
        encrypting = False
        manual = manual_trust

        @staticmethod
        async def _upload_bundle(bundle: omemo.Bundle) -> None:
            await net.upload_bundle(bundle)

        @staticmethod
        async def _download_bundle(namespace: str, bare_jid: str, device_id: int) -> omemo.Bundle:
            if namespace != NS:
                raise omemo.UnknownNamespace(namespace)
            return await net.download_bundle(bare_jid, device_id)

        @staticmethod
        async def _delete_bundle(namespace: str, device_id: int) -> None:
            if namespace != NS:
                raise omemo.UnknownNamespace(namespace)
            await net.delete_bundle(device_id)

        @staticmethod
        async def _upload_device_list(namespace: str, device_list: Dict[int, Optional[str]]) -> None:
            if namespace != NS:
                raise omemo.UnknownNamespace(namespace)
            await net.upload_device_list(frozenset(device_list))

        @staticmethod
        async def _download_device_list(namespace: str, bare_jid: str) -> Dict[int, Optional[str]]:
            if namespace != NS:
                raise omemo.UnknownNamespace(namespace)
            return await net.download_device_list(bare_jid)

        @staticmethod
        async def _send_message(message: omemo.Message, bare_jid: str) -> None:
            await net.send_message(message, bare_jid)

        async def _evaluate_custom_trust_level(self, device: DeviceInformation) -> TrustLevel:
            name = device.trust_level_name
            if name in (TRUST_BLIND, TRUST_TRUSTED):
                return TrustLevel.TRUSTED
            if name == TRUST_DISTRUSTED:
                return TrustLevel.DISTRUSTED
            if name == TRUST_UNDECIDED:
                return TrustLevel.DISTRUSTED if Manager.encrypting else TrustLevel.UNDECIDED
            raise omemo.UnknownTrustLevel(name)

        async def _make_trust_decision(self, undecided: FrozenSet[DeviceInformation],
                                       identifier: Optional[str]) -> None:
            # Blind trust never gets here (nothing is undecided); manual trust
            # neither (undecided counts as distrusted while encrypting).
            raise omemo.TrustDecisionFailed("trust decisions are made with the 'trust' command")

    return Manager
