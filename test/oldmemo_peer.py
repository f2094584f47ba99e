#!/usr/bin/python3
"""An offline legacy-OMEMO peer for interoperability tests.

Drives a real python-omemo SessionManager with the oldmemo backend
(eu.siacs.conversations.axolotl), one command per process. Everything the
peer knows lives in a state directory:

    STATE/jid              the peer's own bare JID
    STATE/storage.json     python-omemo's key/value storage
    STATE/server/JID/list.xml           device list of JID (legacy <list>)
    STATE/server/JID/bundle-ID.xml      bundle of device ID (legacy <bundle>)
    STATE/outbox/N.xml     messages the library sent by itself (N = 1, 2, ...),
                           e.g. the empty message that completes a session
                           after a prekey message arrived

The "server" folder stands in for PEP: the library's upload/download hooks
write and read XML files there, in the legacy wire format, through
oldmemo.etree's serialisers and parsers. Every device is trusted blindly:
this peer exists to test the cryptography and the wire format.

Commands (exit status 0 on success; on failure 1 and the error on stderr):

    init STATE JID
        Create the identity unless STATE already holds one; print the device id.
    bundle STATE
        Print the own <bundle xmlns='eu.siacs.conversations.axolotl'> element.
    encrypt STATE TO_JID TO_DEVICE BUNDLE_XML_FILE|- TEXT
        Encrypt TEXT (UTF-8) for TO_JID's device TO_DEVICE and print the
        <encrypted> element. The bundle file, stored as that device's bundle on
        the fake server, is what a new session is built from; '-' when a
        session or a stored bundle exists already. TO_DEVICE is added to
        TO_JID's device list; every device on that list is encrypted to.
    decrypt STATE FROM_JID FROM_DEVICE ENCRYPTED_XML_FILE [BUNDLE_XML_FILE]
        Decrypt an <encrypted> element from FROM_JID's device FROM_DEVICE and
        write the plaintext to stdout as it is (no newline added). An empty
        (key transport) message prints nothing and says "empty message" on
        stderr. The bundle file tells the peer the sender's identity key the
        first time it hears from that device.

Set OLDMEMO_PEER_DEBUG=1 to see python-omemo's log on stderr.
"""

import asyncio
import json
import logging
import os
import sys
import xml.etree.ElementTree as ET
from typing import Any, Dict, FrozenSet, Optional

import omemo
from omemo import (
    Bundle,
    DeviceInformation,
    Just,
    Maybe,
    Message,
    Nothing,
    SessionManager,
    Storage,
    TrustLevel,
)
import oldmemo
import oldmemo.etree
from oldmemo.oldmemo import NAMESPACE

TRUST_BLIND = "blind"

# The library's network hooks are static methods: they reach the state
# directory through this module-level variable, set once per process.
STATE_DIR = ""

ET.register_namespace("", NAMESPACE)


def server_dir(jid: str) -> str:
    if "/" in jid or jid.startswith(".") or not jid:
        raise ValueError(f"not a bare JID usable as a folder name: {jid!r}")
    return os.path.join(STATE_DIR, "server", jid)


def write_file(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def read_xml(path: str) -> ET.Element:
    with open(path, "rb") as f:
        return ET.fromstring(f.read())


def xml_bytes(element: ET.Element) -> bytes:
    return ET.tostring(element, encoding="utf-8", xml_declaration=False)


class JsonStorage(Storage):
    """python-omemo's storage in one JSON file, rewritten on every change so a
    crash between commands never leaves half a state behind."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.__path = path
        self.__data: Dict[str, Any] = {}
        if os.path.exists(path):
            with open(path, "r", encoding="utf-8") as f:
                self.__data = json.load(f)

    def __flush(self) -> None:
        write_file(self.__path, json.dumps(self.__data, sort_keys=True).encode("utf-8"))

    async def _load(self, key: str) -> Maybe[omemo.JSONType]:
        if key in self.__data:
            return Just(self.__data[key])
        return Nothing()

    async def _store(self, key: str, value: omemo.JSONType) -> None:
        self.__data[key] = value
        self.__flush()

    async def _delete(self, key: str) -> None:
        if key in self.__data:
            del self.__data[key]
            self.__flush()


class FilePeer(SessionManager):
    """SessionManager whose "server" is STATE/server and whose outgoing
    stanzas go to STATE/outbox."""

    @staticmethod
    async def _upload_bundle(bundle: Bundle) -> None:
        assert isinstance(bundle, oldmemo.oldmemo.BundleImpl)
        path = os.path.join(server_dir(bundle.bare_jid), f"bundle-{bundle.device_id}.xml")
        write_file(path, xml_bytes(oldmemo.etree.serialize_bundle(bundle)))

    @staticmethod
    async def _download_bundle(namespace: str, bare_jid: str, device_id: int) -> Bundle:
        if namespace != NAMESPACE:
            raise omemo.UnknownNamespace(namespace)
        path = os.path.join(server_dir(bare_jid), f"bundle-{device_id}.xml")
        if not os.path.exists(path):
            raise omemo.BundleNotFound(f"no bundle for {bare_jid}/{device_id}")
        try:
            return oldmemo.etree.parse_bundle(read_xml(path), bare_jid, device_id)
        except Exception as e:
            raise omemo.BundleDownloadFailed(f"bad bundle {path}: {e}") from e

    @staticmethod
    async def _delete_bundle(namespace: str, device_id: int) -> None:
        jid = own_jid()
        path = os.path.join(server_dir(jid), f"bundle-{device_id}.xml")
        if os.path.exists(path):
            os.remove(path)

    @staticmethod
    async def _upload_device_list(namespace: str, device_list: Dict[int, Optional[str]]) -> None:
        path = os.path.join(server_dir(own_jid()), "list.xml")
        write_file(path, xml_bytes(oldmemo.etree.serialize_device_list(device_list)))

    @staticmethod
    async def _download_device_list(namespace: str, bare_jid: str) -> Dict[int, Optional[str]]:
        if namespace != NAMESPACE:
            raise omemo.UnknownNamespace(namespace)
        path = os.path.join(server_dir(bare_jid), "list.xml")
        if not os.path.exists(path):
            return {}
        try:
            return oldmemo.etree.parse_device_list(read_xml(path))
        except Exception as e:
            raise omemo.DeviceListDownloadFailed(f"bad device list {path}: {e}") from e

    async def _evaluate_custom_trust_level(self, device: DeviceInformation) -> TrustLevel:
        return TrustLevel.TRUSTED

    async def _make_trust_decision(
        self, undecided: FrozenSet[DeviceInformation], identifier: Optional[str]
    ) -> None:
        # Never reached: every device evaluates to TRUSTED.
        for device in undecided:
            await self.set_trust(device.bare_jid, device.identity_key, TRUST_BLIND)

    @staticmethod
    async def _send_message(message: Message, bare_jid: str) -> None:
        outbox = os.path.join(STATE_DIR, "outbox")
        os.makedirs(outbox, exist_ok=True)
        n = 1
        while os.path.exists(os.path.join(outbox, f"{n}.xml")):
            n += 1
        path = os.path.join(outbox, f"{n}.xml")
        write_file(path, xml_bytes(oldmemo.etree.serialize_message(message)))
        print(f"sent to {bare_jid}: {path}", file=sys.stderr)


def own_jid() -> str:
    with open(os.path.join(STATE_DIR, "jid"), "r", encoding="utf-8") as f:
        return f.read().strip()


def publish_device(jid: str, device_id: int, bundle_file: Optional[str]) -> None:
    """Put a remote device on the fake server: its bundle (if given) and its
    id on its account's device list."""
    folder = server_dir(jid)
    if bundle_file is not None:
        element = read_xml(bundle_file)
        # Validate now, so a bad bundle fails here with a clear message.
        oldmemo.etree.parse_bundle(element, jid, device_id)
        write_file(os.path.join(folder, f"bundle-{device_id}.xml"), xml_bytes(element))
    list_path = os.path.join(folder, "list.xml")
    devices: Dict[int, Optional[str]] = {}
    if os.path.exists(list_path):
        devices = oldmemo.etree.parse_device_list(read_xml(list_path))
    if device_id not in devices:
        devices[device_id] = None
        write_file(list_path, xml_bytes(oldmemo.etree.serialize_device_list(devices)))


async def open_peer(jid: str) -> FilePeer:
    storage = JsonStorage(os.path.join(STATE_DIR, "storage.json"))
    peer = await FilePeer.create(
        [oldmemo.Oldmemo(storage)],
        storage,
        jid,
        None,
        TRUST_BLIND,
    )
    # create() leaves the library in history-sync mode, which holds back the
    # empty messages that complete sessions: we are live from here on.
    await peer.after_history_sync()
    return peer


async def cmd_init(args: list) -> None:
    if len(args) != 1:
        raise SystemExit("usage: init STATE JID")
    jid = args[0]
    jid_path = os.path.join(STATE_DIR, "jid")
    if os.path.exists(jid_path):
        if own_jid() != jid:
            raise ValueError(f"state belongs to {own_jid()}, not {jid}")
    else:
        write_file(jid_path, jid.encode("utf-8"))
    peer = await open_peer(jid)
    device, _ = await peer.get_own_device_information()
    print(device.device_id)


async def cmd_bundle(args: list) -> None:
    if args:
        raise SystemExit("usage: bundle STATE")
    jid = own_jid()
    peer = await open_peer(jid)
    device, _ = await peer.get_own_device_information()
    # What the library itself uploaded last: the published bundle.
    path = os.path.join(server_dir(jid), f"bundle-{device.device_id}.xml")
    with open(path, "rb") as f:
        sys.stdout.buffer.write(f.read())
    sys.stdout.buffer.write(b"\n")


async def cmd_encrypt(args: list) -> None:
    if len(args) != 4:
        raise SystemExit("usage: encrypt STATE TO_JID TO_DEVICE BUNDLE_XML_FILE|- TEXT")
    to_jid, to_device, bundle_file, text = args[0], int(args[1]), args[2], args[3]
    peer = await open_peer(own_jid())
    publish_device(to_jid, to_device, None if bundle_file == "-" else bundle_file)
    # encrypt() only looks at cached device lists.
    await peer.refresh_device_list(NAMESPACE, to_jid)
    messages, errors = await peer.encrypt(frozenset([to_jid]), {NAMESPACE: text.encode("utf-8")})
    if errors:
        raise RuntimeError("; ".join(f"{e.bare_jid}/{e.device_id}: {e.exception!r}" for e in errors))
    if len(messages) != 1:
        raise RuntimeError(f"expected one message, got {len(messages)}")
    message = next(iter(messages))
    if not any(k.device_id == to_device for k, _ in message.keys):
        raise RuntimeError(f"no key for device {to_device} in the message")
    sys.stdout.buffer.write(xml_bytes(oldmemo.etree.serialize_message(message)) + b"\n")


async def cmd_decrypt(args: list) -> None:
    if len(args) not in (3, 4):
        raise SystemExit("usage: decrypt STATE FROM_JID FROM_DEVICE ENCRYPTED_XML_FILE [BUNDLE_XML_FILE]")
    from_jid, from_device, enc_file = args[0], int(args[1]), args[2]
    bundle_file = args[3] if len(args) == 4 else None
    jid = own_jid()
    peer = await open_peer(jid)
    publish_device(from_jid, from_device, bundle_file)
    element = read_xml(enc_file)
    message = await oldmemo.etree.parse_message(element, from_jid, jid, peer)
    if message.device_id != from_device:
        raise ValueError(f"message is from device {message.device_id}, not {from_device}")
    plaintext, _device, _key = await peer.decrypt(message)
    if plaintext is None:
        print("empty message", file=sys.stderr)
        return
    sys.stdout.buffer.write(plaintext)


COMMANDS = {
    "init": cmd_init,
    "bundle": cmd_bundle,
    "encrypt": cmd_encrypt,
    "decrypt": cmd_decrypt,
}


async def run(command: str, args: list) -> None:
    # The library starts a signed-prekey rotation task that sleeps for days;
    # leaving run() cancels it.
    await COMMANDS[command](args)


def main(argv: list) -> int:
    global STATE_DIR
    if len(argv) < 3 or argv[1] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 2
    STATE_DIR = argv[2]
    os.makedirs(STATE_DIR, exist_ok=True)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if os.environ.get("OLDMEMO_PEER_DEBUG") else logging.CRITICAL,
    )
    if argv[1] != "init" and not os.path.exists(os.path.join(STATE_DIR, "jid")):
        print(f"error: {STATE_DIR} has no identity; run init first", file=sys.stderr)
        return 1
    try:
        asyncio.run(run(argv[1], argv[3:]))
    except SystemExit:
        raise
    except Exception as e:  # every failure becomes a one-line error and status 1
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        if os.environ.get("OLDMEMO_PEER_DEBUG"):
            raise
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
