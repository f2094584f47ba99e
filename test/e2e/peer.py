#!/usr/bin/python3
"""An independent legacy-OMEMO peer on a real XMPP server, for end-to-end tests.

One process is one device of one account: slixmpp for XMPP, python-omemo with
the oldmemo backend (eu.siacs.conversations.axolotl) for OMEMO, PEP on the
server for device lists and bundles. Everything the device knows (identity,
sessions, trust, its resource) lives in the --state folder, so a restart is
the same device, and a second process with another folder and the same JID is
a second device of that account.

    /usr/bin/python3 test/e2e/peer.py --jid user@localhost --password PW \
        --host 127.0.0.1 --port N --state DIR [--device-id N [--reinstall]] \
        [--no-omemo] [--manual-trust] [--quirk Q]... [--resource R] [--timeout S] \
        [--debug]

--quirk no-prekey-attr|iv-first|bundle-item-1 reproduces lurch 0.7's key
without prekey='true', Dino's <iv> before the keys, Dino's bundle item id '1'.

--reinstall, with --device-id N and a new --state folder, makes a new identity
under an id that is already on the account's device list (a device that was
wiped and set up again, or one that lies about its key): the list keeps N as
it is, and the bundle at N is replaced by the new identity's.

Commands arrive on stdin, one per line; events leave on stdout, one JSON object
per line, flushed. Commands wait until "ready"; end of input means quit.
JID is a bare JID; TEXT is the rest of the line, spaces included.

    send JID TEXT          OMEMO message (type chat, <store/> hint, EME, fallback
                           body) to every device of JID and our other devices;
                           both device lists are fetched first
    send-plain JID TEXT    unencrypted chat message
    send-raw XML           a stanza as it is; an <iq> of type get/set with an id
                           has its answer reported as "iq-result"
    refresh JID            fetch JID's device list now
    trust JID DEVICE       trust a device (needed with --manual-trust)
    distrust JID DEVICE    never encrypt to it, refuse its messages
    subscribe JID          ask for JID's presence (requests to us are accepted
                           and answered with our own)
    ping                   "pong", once the commands before it are done
    quit

Group chats (XEP-0045); ROOM is a bare room JID, e.g. r1@conference.localhost:

    join ROOM NICK         enter (no <history/> limits); a room this creates
                           (status 201) stays locked until "configure"
    configure ROOM FIELD=VALUE...
                           as owner, submit the muc#roomconfig form with these
                           fields only (one value each; commas are not lists),
                           e.g. muc#roomconfig_whois=anyone
                           muc#roomconfig_membersonly=1; a field the room's
                           form lacks is an error
    affiliate ROOM JID AFFILIATION
                           owner, admin, member, none or outcast (muc#admin)
    gsend ROOM TEXT        OMEMO groupchat message (same decorations as send)
                           for every device of the real JIDs of the occupants
                           and of the owners/admins/members (lists fetched
                           each time when the room allows it), and our other
                           devices; a JID without usable devices is left out
                           and named in errors, only no recipient at all is
                           an error
    gsend-plain ROOM TEXT  unencrypted groupchat message (also when not in
                           the room: the refusal comes back as group-error)
    leave ROOM

Events ("event" names the kind; [x] only sometimes present):

    ready          jid, resource, device_id (null with --no-omemo), fingerprint,
                   devices (own list as read back from the server), first_run,
                   startup_ms (since process start), session_ms (since login)
    message        from, to, id, type, [carbon: "sent"|"received"], text,
                   encrypted, sender_device, prekey, [trust], [omemo_element], raw
    key-transport  from, to, id, type, [carbon], sender_device, prekey, trust,
                   for_us (false: a key for another device of ours)
    key-transport-sent  to, devices (sent by python-omemo on its own)
    decrypt-error  from, to, id, type, [carbon], sender_device, error, raw
    duplicate      from, to, id, type, sender_device (an <encrypted> seen before)
    sent           to, encrypted, id, and for OMEMO: devices, own_devices,
                   prekey_devices, skipped (undecided with --manual-trust),
                   errors (devices left out, e.g. no bundle)
    sent-raw; iq-result  id, type, raw
    devices        jid, devices, trust {id: level}, fingerprints {id: hex}
    devicelist     jid, devices (a PEP notification)
    node-reconfigured  node (publish hit precondition-not-met)
    trust          jid, device, trust, fingerprint
    subscription   jid, type ("subscribe", "subscribed", "subscribe-sent")
    message-error  from, condition, raw
    pong; error    text, [command], [raw]; disconnected;
                   room commands add [room], [condition] (the server's error
                   condition, "timeout", or "unknown-field" with [fields]),
                   and gsend [errors]

    joined         room, nick, created (status 201), occupants {nick: real
                   bare JID or null}, affiliation, role, codes (status codes
                   of our own presence, e.g. 100 110 201), features (room's
                   disco#info, sorted), info {muc#roominfo field: value}
    configured     room, fields, features, info (disco#info after the change)
    affiliated     room, jid, affiliation
    gsent          room, id, encrypted; for OMEMO also recipients (sorted
                   bare JIDs with at least one key), devices {jid: [ids]},
                   device_count (keys for others), own_devices,
                   prekey_devices {jid: [ids]}, skipped (undecided with
                   --manual-trust), errors [{jid, device, reason, [nick]}]
                   (JIDs or devices left out; an occupant whose real JID is
                   hidden appears with jid null and its nick), refused_lists
                   {affiliation: condition} (admin lists the room refused)
    left           room
    occupant       room, nick, jid (real bare JID or null), affiliation,
                   role, available, self, codes (muc#user status codes)
    groupmessage   room, nick (null: the room itself), jid (sender's real
                   bare JID from the occupants seen, null if unknown), id,
                   type, text, encrypted, sender_device, prekey, own (our own
                   message reflected: an OMEMO one carries the text we sent
                   and decrypted=false), delayed (<delay/>: history),
                   [trust], [omemo_element], raw
    group-decrypt-error  room, nick, jid, id, type, own, delayed,
                   sender_device, error ("unknown real JID" when the
                   sender's JID cannot be seen), raw; a duplicate or
                   key-transport in a room carries these room fields too
    room-config-changed  room, codes (status codes of a body-less room
                   message, e.g. 104, 172, 173), raw
    group-error    room, nick, condition, stanza ("message" or
                   "presence"), raw (an error from the room)

An OMEMO group message is decrypted as coming from the sender's real JID;
prekey messages there get the usual key transport answer, sent to that JID
as a chat message.

Exit status: 0 after quit, 1 when start-up fails or the connection is lost.
"""

import argparse
import asyncio
import copy
import hashlib
import json
import logging
import os
import secrets
import sys
import threading
import time
import xml.etree.ElementTree as ET
from typing import Any, Dict, Optional

T0 = time.monotonic()

import slixmpp  # noqa: E402
from slixmpp import JID  # noqa: E402
from slixmpp.exceptions import IqError, IqTimeout  # noqa: E402
from slixmpp.jid import InvalidJID  # noqa: E402
from slixmpp.xmlstream import tostring  # noqa: E402
from slixmpp.xmlstream.handler import Callback  # noqa: E402
from slixmpp.xmlstream.matcher import MatchXPath  # noqa: E402
from slixmpp.xmlstream.matcher.base import MatcherBase  # noqa: E402

NS_CLIENT = "jabber:client"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_PUBSUB_OWNER = NS_PUBSUB + "#owner"
NS_PUBSUB_EVENT = NS_PUBSUB + "#event"
NS_PUBSUB_ERRORS = NS_PUBSUB + "#errors"
NS_DATA = "jabber:x:data"
NS_CARBONS = "urn:xmpp:carbons:2"
NS_FORWARD = "urn:xmpp:forward:0"
NS_HINTS = "urn:xmpp:hints"
NS_EME = "urn:xmpp:eme:0"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
OMEMO_NS = "eu.siacs.conversations.axolotl"
NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = NS_MUC + "#user"
NS_MUC_ADMIN = NS_MUC + "#admin"
NS_MUC_OWNER = NS_MUC + "#owner"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DELAY = "urn:xmpp:delay"
AFFILIATIONS = ("owner", "admin", "member", "none", "outcast")

FALLBACK_BODY = "[This message is OMEMO encrypted; your client could not decrypt it.]"
IQ_TIMEOUT = 10

log = logging.getLogger("omemo-peer")


def emit(event: str, **fields: Any) -> None:
    fields = {"event": event, **fields}
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def bare(jid_text: str) -> str:
    """A normalised bare JID, or ValueError."""
    try:
        jid = JID(jid_text)
    except InvalidJID as e:
        raise ValueError(f"invalid JID {jid_text!r}: {e}") from e
    if not jid.bare or jid.resource:
        raise ValueError(f"expected a bare JID, got {jid_text!r}")
    return jid.bare


def data_form(form_type: str, fields: Dict[str, str]) -> ET.Element:
    x = ET.Element("{%s}x" % NS_DATA, {"type": "submit"})
    f = ET.SubElement(x, "{%s}field" % NS_DATA, {"var": "FORM_TYPE", "type": "hidden"})
    ET.SubElement(f, "{%s}value" % NS_DATA).text = form_type
    for var, value in fields.items():
        f = ET.SubElement(x, "{%s}field" % NS_DATA, {"var": var})
        ET.SubElement(f, "{%s}value" % NS_DATA).text = value
    return x


def iq_error_condition(e: IqError) -> str:
    try:
        return e.iq["error"]["condition"] or "unknown"
    except Exception:
        return "unknown"


class UsageError(Exception):
    pass


class CommandError(Exception):
    """A command that failed with something to report beyond the text,
    e.g. the server's error condition."""

    def __init__(self, text: str, **fields: Any) -> None:
        super().__init__(text)
        self.fields = fields


def stanza_error_condition(xml: ET.Element) -> Optional[str]:
    error = xml.find("{%s}error" % NS_CLIENT)
    if error is None:
        return None
    for child in error:
        if child.tag.startswith("{%s}" % NS_STANZAS) and not child.tag.endswith("}text"):
            return child.tag.split("}")[1]
    return None


class MatchRoomPresence(MatcherBase):
    """Presence from the rooms we joined or are joining (the criteria is the
    live room table)."""

    def match(self, stanza: Any) -> bool:
        if stanza.xml.tag != "{%s}presence" % NS_CLIENT:
            return False
        try:
            return JID(stanza.xml.get("from") or "").bare in self._criteria
        except InvalidJID:
            return False


class Room:
    """What the peer knows about one group chat."""

    def __init__(self, jid: str, nick: str) -> None:
        self.jid = jid
        self.nick = nick
        self.joined = False
        self.created = False
        self.self_codes: list = []
        # nick -> {"jid": real bare JID or None, "affiliation", "role"}
        self.occupants: Dict[str, Dict[str, Any]] = {}
        # nick -> real bare JID, kept after the occupant leaves so that a
        # message read after its sender's departure still has a sender
        self.known: Dict[str, str] = {}
        # real bare JID -> affiliation, from presence, admin lists and our
        # own affiliate commands
        self.affiliations: Dict[str, str] = {}
        self.sent: Dict[str, str] = {}  # message id -> text we sent
        self.join_future: Optional[asyncio.Future] = None
        self.leave_future: Optional[asyncio.Future] = None

    def real_jid(self, nick: Optional[str]) -> Optional[str]:
        if nick is None:
            return None
        occupant = self.occupants.get(nick)
        if occupant is not None and occupant["jid"]:
            return occupant["jid"]
        return self.known.get(nick)


class MatchRawIqAnswer(MatcherBase):
    """Answers to IQs sent with send-raw, and nothing else: a handler for
    every IQ would stop slixmpp from refusing requests it does not know."""

    def match(self, stanza: Any) -> bool:
        return (stanza.xml.tag == "{%s}iq" % NS_CLIENT and stanza.xml.get("type") in ("result", "error")
                and stanza.xml.get("id") in self._criteria)


class Peer(slixmpp.ClientXMPP):
    def __init__(self, args: argparse.Namespace, resource: str) -> None:
        # SCRAM costs ~70 ms of hashing per login here; the loopback test
        # server offers PLAIN, so that is the default.
        super().__init__(f"{args.jid}/{resource}", args.password, sasl_mech=args.sasl_mech or None)
        self.args = args
        self.own = bare(args.jid)
        self.omemo_enabled = not args.no_omemo
        self.quirks = frozenset(args.quirk or ())
        self.exit_code = 1
        self.done: asyncio.Future = asyncio.get_event_loop().create_future()
        self.ready = asyncio.Event()
        self.quitting = False
        self.disconnect_reported = False
        self.lock = asyncio.Lock()  # one python-omemo operation at a time
        self.inbound: asyncio.Queue = asyncio.Queue()
        self.commands: asyncio.Queue = asyncio.Queue()
        self.tasks = []
        self.po: Any = None  # peer_omemo, once imported
        self.sm = None
        self.backend = None
        self.storage = None
        self.manager_cls = None
        self.device_id: Optional[int] = None
        # --reinstall: an id of our own list that python-omemo must not see
        # while it draws the id of a new identity
        self.hidden_own_device: Optional[int] = None

        # Loopback tests run without TLS: allow PLAIN over the bare socket.
        self["feature_mechanisms"].unencrypted_plain = True
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0115")
        # Subscription requests are accepted and answered with our own.
        self.roster.auto_authorize = True
        self.roster.auto_subscribe = True

        self.register_handler(Callback(
            "omemo-peer messages",
            MatchXPath("{%s}message" % NS_CLIENT),
            lambda stanza: self.inbound.put_nowait(stanza),
        ))
        self.raw_iq_ids = set()
        self.seen: Dict[bytes, None] = {}  # digests of recent <encrypted>, oldest first
        self.register_handler(Callback(
            "omemo-peer raw iq answers",
            MatchRawIqAnswer(self.raw_iq_ids),
            self.on_iq_answer,
        ))
        self.rooms: Dict[str, Room] = {}
        self.register_handler(Callback(
            "omemo-peer room presence",
            MatchRoomPresence(self.rooms),
            lambda stanza: self.inbound.put_nowait(stanza),
        ))
        self.add_event_handler("session_start", self.on_session_start)
        self.add_event_handler("disconnected", self.on_disconnected)
        self.add_event_handler("connection_failed", self.on_connection_failed)
        self.add_event_handler("failed_all_auth", self.on_failed_auth)
        self.add_event_handler("presence_subscribe",
                               lambda p: emit("subscription", jid=p["from"].bare, type="subscribe"))
        self.add_event_handler("presence_subscribed",
                               lambda p: emit("subscription", jid=p["from"].bare, type="subscribed"))

    # ------------------------------------------------------------ lifecycle

    def finish(self, code: int) -> None:
        if not self.done.done():
            self.exit_code = code
            self.done.set_result(code)

    def on_connection_failed(self, error: Any) -> None:
        emit("error", text=f"connection failed: {error}")
        self.cancel_connection_attempt()
        self.finish(1)

    def on_failed_auth(self, _: Any) -> None:
        emit("error", text="authentication failed")
        self.quitting = True
        self.disconnect(wait=1)
        self.finish(1)

    def on_disconnected(self, _: Any) -> None:
        if not self.disconnect_reported:
            self.disconnect_reported = True
            emit("disconnected")
        self.finish(0 if self.quitting else 1)

    async def on_session_start(self, _: Any) -> None:
        try:
            await self.start_session()
        except Exception as e:
            log.debug("start-up failed", exc_info=True)
            emit("error", text=f"start-up failed: {type(e).__name__}: {e}")
            self.quitting = True
            self.disconnect(wait=1)
            self.finish(1)

    async def start_session(self) -> None:
        t_session = time.monotonic()
        # +notify in disco and caps: Prosody's PEP decides from the caps hash
        # in our presence which nodes to push (XEP-0163 section 4.3).
        await self["xep_0030"].add_feature(OMEMO_NS + ".devicelist+notify")
        await self["xep_0115"].update_caps(broadcast=False)
        await self.get_roster(timeout=IQ_TIMEOUT)
        self.send_presence()
        try:
            await self.iq_set(None, ET.Element("{%s}enable" % NS_CARBONS))
        except (IqError, IqTimeout) as e:
            log.warning("carbons not enabled: %s", e)
        fields: Dict[str, Any] = {"jid": self.own, "resource": self.boundjid.resource}
        if self.omemo_enabled:
            fields.update(await self.start_omemo())
        else:
            fields["device_id"] = None
        now = time.monotonic()
        fields["startup_ms"] = round((now - T0) * 1000)
        fields["session_ms"] = round((now - t_session) * 1000)
        emit("ready", **fields)
        self.ready.set()

    async def start_omemo(self) -> Dict[str, Any]:
        # python-omemo and its crypto take ~0.17 s to import: not needed
        # for --no-omemo, so loaded only here.
        import peer_omemo as po

        self.po = po
        self.storage = po.JsonStorage(os.path.join(self.args.state, "storage.json"))
        first_run = "/own_device_id" not in self.storage.data
        self.manager_cls = po.make_manager_class(self, self.args.manual_trust)
        if first_run and self.args.device_id is not None:
            wanted = self.args.device_id
            if not 1 <= wanted <= 2**31 - 1:
                raise ValueError(f"device id out of range: {wanted}")
            # python-omemo draws the id at random from [MIN, MAX) and redraws
            # while it clashes with the published list: a range of one id
            # would then spin forever, so check the list first.
            if wanted in await self.download_device_list(self.own):
                if not self.args.reinstall:
                    raise RuntimeError(f"device id {wanted} is already on {self.own}'s device list")
                # The draw must not see the id taken: hide it from python-omemo
                # until the new identity holds it.
                self.hidden_own_device = wanted
            self.manager_cls.DEVICE_ID_MIN = wanted
            self.manager_cls.DEVICE_ID_MAX = wanted + 1
        self.backend = po.Oldmemo(self.storage)
        undecided = po.TRUST_UNDECIDED if self.args.manual_trust else po.TRUST_BLIND
        async with self.lock:
            try:
                self.sm = await self.manager_cls.create([self.backend], self.storage, self.own, None, undecided)
                own_device, _ = await self.sm.get_own_device_information()
                self.device_id = own_device.device_id
                if self.args.device_id is not None and self.device_id != self.args.device_id:
                    raise RuntimeError(f"state holds device {self.device_id}, not {self.args.device_id}")
                if not first_run:
                    # create() publishes only on a first run: the bundle may
                    # have changed while we were away, and another client may
                    # have dropped us from the list.
                    await self.upload_bundle(await self.backend.get_bundle(self.own, self.device_id))
                    await self.sm.refresh_device_list(po.NS, self.own)
                # Live from here on: queued key transport messages go out.
                await self.sm.after_history_sync()
            finally:
                self.hidden_own_device = None
                self.storage.flush()
        # Read back what the server now serves.
        ids, bundle = await asyncio.gather(self.download_device_list(self.own),
                                           self.download_bundle(self.own, self.device_id))
        for _ in range(3):
            if self.device_id in ids:
                break
            # Another device of this account published its own read-modify-
            # write of the list at the same moment and dropped us: add us again.
            async with self.lock:
                try:
                    await self.sm.refresh_device_list(po.NS, self.own)
                finally:
                    self.storage.flush()
            ids = await self.download_device_list(self.own)
        if self.device_id not in ids:
            raise RuntimeError(f"own device {self.device_id} missing from the published list {sorted(ids)}")
        if bundle.identity_key != own_device.identity_key:
            raise RuntimeError("published bundle carries another identity key")
        return {
            "device_id": self.device_id,
            "fingerprint": po.fingerprint(own_device.identity_key),
            "devices": sorted(ids),
            "first_run": first_run,
        }

    async def run(self) -> int:
        self.connect(address=(self.args.host, self.args.port), use_ssl=False,
                     force_starttls=False, disable_starttls=True)
        self.tasks = [
            asyncio.ensure_future(self.inbound_worker()),
            asyncio.ensure_future(self.command_worker()),
            asyncio.ensure_future(self.startup_watchdog()),
        ]
        start_stdin_reader(asyncio.get_event_loop(), self.commands)
        code = await self.done
        for task in self.tasks:
            task.cancel()
        if self.storage is not None:
            self.storage.flush()
        return code

    async def startup_watchdog(self) -> None:
        try:
            await asyncio.wait_for(self.ready.wait(), self.args.timeout)
        except asyncio.TimeoutError:
            emit("error", text=f"not ready after {self.args.timeout} s")
            self.quitting = True
            self.disconnect(wait=1)
            await asyncio.sleep(1.5)
            self.finish(1)

    def on_iq_answer(self, iq: Any) -> None:
        if iq["id"] in self.raw_iq_ids:
            self.raw_iq_ids.discard(iq["id"])
            emit("iq-result", id=iq["id"], type=iq["type"], raw=tostring(iq.xml))

    # ------------------------------------------------------------ IQ helpers

    async def iq_send(self, itype: str, to: Optional[str], payload: ET.Element) -> ET.Element:
        iq = self.Iq()
        iq["type"] = itype
        if to:
            iq["to"] = to
        iq.append(payload)
        result = await iq.send(timeout=IQ_TIMEOUT)
        return result.xml

    async def iq_set(self, to: Optional[str], payload: ET.Element) -> ET.Element:
        return await self.iq_send("set", to, payload)

    async def pep_publish(self, node: str, payload: ET.Element, item_id: str = "current") -> None:
        def publish() -> ET.Element:
            pubsub = ET.Element("{%s}pubsub" % NS_PUBSUB)
            pub = ET.SubElement(pubsub, "{%s}publish" % NS_PUBSUB, {"node": node})
            item = ET.SubElement(pub, "{%s}item" % NS_PUBSUB, {"id": item_id})
            item.append(copy.deepcopy(payload))
            opts = ET.SubElement(pubsub, "{%s}publish-options" % NS_PUBSUB)
            opts.append(data_form(NS_PUBSUB + "#publish-options", {"pubsub#access_model": "open"}))
            return pubsub

        try:
            await self.iq_set(None, publish())
        except IqError as e:
            if e.iq.xml.find("{%s}error/{%s}precondition-not-met" % (NS_CLIENT, NS_PUBSUB_ERRORS)) is None:
                raise
            # The node exists with another access model (e.g. the server's
            # default "presence"): make it open, then publish again.
            log.info("precondition-not-met on %s: reconfiguring", node)
            owner = ET.Element("{%s}pubsub" % NS_PUBSUB_OWNER)
            conf = ET.SubElement(owner, "{%s}configure" % NS_PUBSUB_OWNER, {"node": node})
            conf.append(data_form(NS_PUBSUB + "#node_config", {"pubsub#access_model": "open"}))
            await self.iq_set(None, owner)
            emit("node-reconfigured", node=node)
            await self.iq_set(None, publish())

    async def pep_items(self, jid: str, node: str, max_items: Optional[int] = None) -> Optional[ET.Element]:
        """The payload of item 'current', else of the last item the server
        returned (Dino names its bundle item '1'); None when the node does not
        exist or has no items."""
        pubsub = ET.Element("{%s}pubsub" % NS_PUBSUB)
        attrs = {"node": node}
        if max_items is not None:
            attrs["max_items"] = str(max_items)
        ET.SubElement(pubsub, "{%s}items" % NS_PUBSUB, attrs)
        try:
            result = await self.iq_send("get", None if jid == self.own else jid, pubsub)
        except IqError as e:
            if iq_error_condition(e) == "item-not-found":
                return None
            raise
        found = result.findall("{%s}pubsub/{%s}items/{%s}item" % (NS_PUBSUB, NS_PUBSUB, NS_PUBSUB))
        if not found:
            return None
        item = next((i for i in found if i.get("id") == "current"), found[-1])
        return item[0] if len(item) else None

    # --------------------------------- network hooks called by python-omemo

    async def upload_bundle(self, bundle: Any) -> None:
        omemo = self.po.omemo
        try:
            await self.pep_publish(self.po.NODE_BUNDLE_PREFIX + str(bundle.device_id),
                                   self.po.serialize_bundle(bundle),
                                   "1" if "bundle-item-1" in self.quirks else "current")
        except (IqError, IqTimeout) as e:
            raise omemo.BundleUploadFailed(str(e)) from e

    async def download_bundle(self, jid: str, device_id: int) -> Any:
        omemo = self.po.omemo
        try:
            payload = await self.pep_items(jid, self.po.NODE_BUNDLE_PREFIX + str(device_id), 1)
        except (IqError, IqTimeout) as e:
            raise omemo.BundleDownloadFailed(f"{jid}/{device_id}: {e}") from e
        if payload is None:
            raise omemo.BundleNotFound(f"no bundle for {jid}/{device_id}")
        try:
            return self.po.parse_bundle(payload, jid, device_id)
        except Exception as e:
            raise omemo.BundleDownloadFailed(f"bad bundle {jid}/{device_id}: {e}") from e

    async def delete_bundle(self, device_id: int) -> None:
        omemo = self.po.omemo
        owner = ET.Element("{%s}pubsub" % NS_PUBSUB_OWNER)
        ET.SubElement(owner, "{%s}delete" % NS_PUBSUB_OWNER, {"node": self.po.NODE_BUNDLE_PREFIX + str(device_id)})
        try:
            await self.iq_set(None, owner)
        except (IqError, IqTimeout) as e:
            raise omemo.BundleDeletionFailed(str(e)) from e

    async def upload_device_list(self, ids) -> None:
        omemo = self.po.omemo
        try:
            await self.pep_publish(self.po.NODE_DEVICELIST, self.po.serialize_device_list(ids))
        except (IqError, IqTimeout) as e:
            raise omemo.DeviceListUploadFailed(str(e)) from e

    async def download_device_list(self, jid: str) -> Dict[int, Optional[str]]:
        omemo = self.po.omemo
        try:
            payload = await self.pep_items(jid, self.po.NODE_DEVICELIST)
        except (IqError, IqTimeout) as e:
            raise omemo.DeviceListDownloadFailed(f"{jid}: {e}") from e
        try:
            ids = self.po.parse_device_list(payload)
        except Exception as e:
            raise omemo.DeviceListDownloadFailed(f"bad device list of {jid}: {e}") from e
        if jid == self.own and self.hidden_own_device is not None:
            ids.pop(self.hidden_own_device, None)
        return ids

    async def send_message(self, message: Any, jid: str) -> None:
        # Messages python-omemo sends by itself carry no payload: key
        # transport to complete a session or to move a stale ratchet on.
        msg = self.make_message(mto=jid, mtype="chat")
        msg.append(self.po.serialize_message(message, self.quirks))
        msg.append(ET.Element("{%s}store" % NS_HINTS))
        msg.send()
        emit("key-transport-sent", to=jid, devices=sorted(k.device_id for k, _ in message.keys))

    # ------------------------------------------------------------ inbound

    async def inbound_worker(self) -> None:
        await self.ready.wait()
        while True:
            stanza = await self.inbound.get()
            try:
                # Room presence shares the queue with messages: the occupant
                # map must be as it was when each message was sent.
                if stanza.xml.tag == "{%s}presence" % NS_CLIENT:
                    self.handle_room_presence(stanza.xml)
                else:
                    await self.handle_message(stanza)
            except Exception as e:
                log.debug("inbound failed", exc_info=True)
                emit("error", text=f"handling a message failed: {type(e).__name__}: {e}",
                     raw=tostring(stanza.xml))
            finally:
                if self.storage is not None:
                    self.storage.flush()

    async def handle_message(self, stanza: Any) -> None:
        xml = stanza.xml
        sender = stanza["from"]
        event = xml.find("{%s}event" % NS_PUBSUB_EVENT)
        if event is not None:
            await self.handle_pep_event(sender.bare or self.own, event)
            return
        for kind in ("received", "sent"):
            carbon = xml.find("{%s}%s" % (NS_CARBONS, kind))
            if carbon is None:
                continue
            # A copy is only genuine when our own account sent it (XEP-0280 section 11).
            if sender.bare and sender.bare != self.own:
                emit("error", text=f"ignored a forged carbon from {sender}", raw=tostring(xml))
                return
            inner = carbon.find("{%s}forwarded/{%s}message" % (NS_FORWARD, NS_CLIENT))
            if inner is None:
                return
            if kind == "sent" and JID(inner.get("to") or self.own).bare == self.own:
                # Another device of ours wrote to our bare JID (key transport
                # between our devices): the message itself reaches us too, and
                # its keys can be used only once.
                return
            await self.handle_content(inner, kind)
            return
        if stanza["type"] == "error":
            condition = stanza_error_condition(xml)
            if sender.bare in self.rooms:
                emit("group-error", room=sender.bare, nick=sender.resource or None, condition=condition,
                     stanza="message", raw=tostring(xml))
                return
            emit("message-error", **{"from": sender.bare, "condition": condition, "raw": tostring(xml)})
            return
        if stanza["type"] == "groupchat":
            await self.handle_groupchat(xml)
            return
        await self.handle_content(xml, None)

    async def handle_pep_event(self, jid: str, event: ET.Element) -> None:
        items = event.find("{%s}items" % NS_PUBSUB_EVENT)
        if items is None or items.get("node") != OMEMO_NS + ".devicelist":
            return
        found = items.findall("{%s}item" % NS_PUBSUB_EVENT)
        if not found:
            return  # a retraction: the next publish tells the truth
        payload = found[-1].find("{%s}list" % OMEMO_NS)
        if payload is None:
            emit("error", text=f"device list event from {jid} without <list>", raw=tostring(event))
            return
        if not self.omemo_enabled:
            emit("devicelist", jid=jid, devices=sorted(int(d.get("id", "0")) for d in payload
                                                        if d.get("id", "").isdigit()))
            return
        ids = self.po.parse_device_list(payload)
        emit("devicelist", jid=jid, devices=sorted(ids))
        async with self.lock:
            if jid == self.own and self.device_id not in ids:
                # Possibly a stale item (the server resends the last one when
                # we come online): re-adding ourselves to it could drop a
                # device added since, so start from the server's current list.
                await self.sm.refresh_device_list(self.po.NS, self.own)
            else:
                await self.sm.update_device_list(self.po.NS, jid, ids)

    async def handle_content(self, msg: ET.Element, carbon: Optional[str]) -> None:
        frm = JID(msg.get("from") or self.own)
        to = JID(msg.get("to") or self.own)
        # In a sent carbon the contact is the addressee.
        contact = to.bare if carbon == "sent" else frm.bare
        common: Dict[str, Any] = {"from": frm.bare, "to": to.bare, "id": msg.get("id"),
                                  "type": msg.get("type") or "normal"}
        if carbon:
            common["carbon"] = carbon
        body_elt = msg.find("{%s}body" % NS_CLIENT)
        body = body_elt.text or "" if body_elt is not None else None
        encrypted = msg.find("{%s}encrypted" % OMEMO_NS)
        if encrypted is None or not self.omemo_enabled:
            if body is None:
                return  # chat states, receipts and the like
            fields = dict(common, text=body, encrypted=False, sender_device=None, prekey=None)
            if encrypted is not None:
                fields["omemo_element"] = True
            emit("message", **fields, raw=tostring(msg))
            return
        await self.decrypt(msg, encrypted, frm.bare, contact, common)

    async def decrypt(self, msg: ET.Element, encrypted: ET.Element, sender: str, contact: str,
                      common: Dict[str, Any], group: bool = False) -> None:
        """Decrypts for `sender` (a real bare JID, also in a group chat) and
        reports the outcome; in a group the events are "groupmessage" and
        "group-decrypt-error" instead of "message" and "decrypt-error"."""
        omemo = self.po.omemo
        po = self.po
        raw = tostring(msg)
        ev_message = "groupmessage" if group else "message"
        ev_error = "group-decrypt-error" if group else "decrypt-error"
        try:
            parsed = po.parse_encrypted(encrypted)
        except po.WireError as e:
            emit(ev_error, **common, sender_device=None, error=f"malformed <encrypted>: {e}", raw=raw)
            return
        common["sender_device"] = parsed.sid
        if sender == self.own and parsed.sid == self.device_id:
            return  # our own message reflected back
        # A second copy (archive, carbon and direct delivery) cannot be
        # decrypted again: the message keys are gone after the first.
        digest = hashlib.sha256(sender.encode() + b"\0" + ET.tostring(encrypted)).digest()
        if digest in self.seen:
            emit("duplicate", **common)
            return
        self.seen[digest] = None
        while len(self.seen) > 512:
            self.seen.pop(next(iter(self.seen)))
        mine = parsed.keys_for(self.device_id)
        if not mine:
            if parsed.payload is None:
                # Key transport for another device of ours (it went to the
                # bare JID, so every resource sees it).
                emit("key-transport", **common, prekey=None, for_us=False)
            else:
                emit(ev_error, **common, error=f"no key for our device {self.device_id}", raw=raw)
            return
        async with self.lock:
            devices = await self.sm.get_device_information(sender)
            device = next((d for d in devices if d.device_id == parsed.sid), None)
            if device is None:
                try:
                    await self.sm.refresh_device_list(po.NS, sender)
                except omemo.DeviceListDownloadFailed as e:
                    log.warning("device list of %s: %s", sender, e)
                devices = await self.sm.get_device_information(sender)
                device = next((d for d in devices if d.device_id == parsed.sid), None)
            if device is None:
                emit(ev_error, **common, error=f"unknown sender device {parsed.sid} (not in the "
                     f"device list of {sender}, or its bundle is unavailable)", raw=raw)
                return
            # The legacy format carries the identity key in X25519 form; the
            # Ed25519 sign bit comes from the key learnt from the bundle.
            sign_bit = bool(device.identity_key[31] & 0x80)
            first_error: Optional[BaseException] = None
            for data, prekey_attr in mine:
                candidates = po.key_candidates(data, prekey_attr, self.own, self.device_id, sign_bit)
                if not candidates and first_error is None:
                    first_error = po.WireError("key is neither a WhisperMessage nor a PreKeyWhisperMessage")
                for key_material, key_exchange, is_prekey in candidates:
                    message = omemo.Message(po.NS, sender, parsed.sid, parsed.content(),
                                            frozenset({(key_material, key_exchange)}))
                    try:
                        plaintext, _, _ = await self.sm.decrypt(message)
                    except Exception as e:
                        log.debug("decrypt attempt failed", exc_info=True)
                        if first_error is None:
                            first_error = e
                        continue
                    trust = device.trust_level_name
                    if plaintext is None:
                        emit("key-transport", **common, prekey=is_prekey, trust=trust, for_us=True)
                    else:
                        emit(ev_message, **common, text=plaintext.decode("utf-8", errors="replace"),
                             encrypted=True, prekey=is_prekey, trust=trust, raw=raw)
                    return
        emit(ev_error, **common, error=f"{type(first_error).__name__}: {first_error}", raw=raw)

    # ------------------------------------------------------------ commands

    async def command_worker(self) -> None:
        await self.ready.wait()
        while True:
            line = await self.commands.get()
            if line is None:
                line = "quit"
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            try:
                await self.run_command(line)
            except UsageError as e:
                emit("error", text=str(e), command=line)
            except CommandError as e:
                emit("error", text=str(e), command=line, **e.fields)
            except Exception as e:
                log.debug("command failed", exc_info=True)
                emit("error", text=f"{type(e).__name__}: {e}", command=line)
            finally:
                if self.storage is not None:
                    self.storage.flush()
            if self.quitting:
                return

    def need_omemo(self) -> None:
        if not self.omemo_enabled:
            raise UsageError("OMEMO is disabled (--no-omemo)")

    async def run_command(self, line: str) -> None:
        verb, _, rest = line.strip().partition(" ")
        if verb == "quit":
            self.quitting = True
            await self.disconnect(wait=2)
            self.finish(0)
            return
        if verb == "ping":
            emit("pong")
            return
        if verb == "send-raw":
            try:
                element = ET.fromstring(rest)
            except ET.ParseError as e:
                raise UsageError(f"send-raw: not well-formed XML: {e}")
            if element.tag in ("iq", "{%s}iq" % NS_CLIENT) and element.get("id") \
                    and element.get("type") in ("get", "set"):
                # Report the answer, which slixmpp would otherwise drop.
                self.raw_iq_ids.add(element.get("id"))
            self.send_raw(rest)
            emit("sent-raw")
            return
        if verb in ("send", "send-plain"):
            jid_text, _, text = rest.partition(" ")
            if not jid_text or not text:
                raise UsageError(f"usage: {verb} JID TEXT")
            jid = self.arg_jid(jid_text)
            if verb == "send":
                self.need_omemo()
                await self.cmd_send(jid, text)
            else:
                msg = self.make_message(mto=jid, mbody=text, mtype="chat")
                msg.send()
                emit("sent", to=jid, encrypted=False, id=msg["id"])
            return
        if verb == "refresh":
            self.need_omemo()
            await self.cmd_refresh(self.arg_jid(rest.strip()))
            return
        if verb in ("trust", "distrust"):
            self.need_omemo()
            parts = rest.split()
            if len(parts) != 2 or not parts[1].isdigit():
                raise UsageError(f"usage: {verb} JID DEVICE_ID")
            await self.cmd_trust(self.arg_jid(parts[0]), int(parts[1]), verb)
            return
        if verb == "subscribe":
            jid = self.arg_jid(rest.strip())
            self.send_presence(pto=jid, ptype="subscribe")
            emit("subscription", jid=jid, type="subscribe-sent")
            return
        if verb in ("join", "configure", "affiliate", "gsend", "gsend-plain", "leave"):
            await self.run_room_command(verb, rest)
            return
        raise UsageError(f"unknown command {verb!r}")

    def arg_jid(self, text: str) -> str:
        try:
            return bare(text)
        except ValueError as e:
            raise UsageError(str(e))

    async def cmd_send(self, jid: str, text: str) -> None:
        po = self.po
        async with self.lock:
            # encrypt() only looks at the cached lists.
            await self.sm.refresh_device_list(po.NS, jid)
            if jid != self.own:
                await self.sm.refresh_device_list(po.NS, self.own)
            skipped = []
            for jid_ in sorted({jid, self.own}):
                for d in sorted(await self.sm.get_device_information(jid_), key=lambda d: d.device_id):
                    if (dict(d.active).get(po.NS) and d.device_id != self.device_id
                            and d.trust_level_name not in (po.TRUST_BLIND, po.TRUST_TRUSTED)):
                        skipped.append({"jid": d.bare_jid, "device": d.device_id, "trust": d.trust_level_name})
            self.manager_cls.encrypting = True
            try:
                messages, errors = await self.sm.encrypt(frozenset([jid]), {po.NS: text.encode("utf-8")})
            finally:
                self.manager_cls.encrypting = False
        message = next(iter(messages))
        encrypted = po.serialize_message(message, self.quirks)
        msg = self.make_message(mto=jid, mbody=FALLBACK_BODY, mtype="chat")
        msg.append(encrypted)
        msg.append(ET.Element("{%s}store" % NS_HINTS))
        msg.append(ET.Element("{%s}encryption" % NS_EME, {"name": "OMEMO", "namespace": OMEMO_NS}))
        msg.send()
        keys = sorted(((k.bare_jid, k.device_id, x is not None) for k, x in message.keys))
        emit("sent", to=jid, encrypted=True, id=msg["id"],
             devices=[d for j, d, _ in keys if j == jid],
             own_devices=[d for j, d, _ in keys if j == self.own and jid != self.own],
             prekey_devices=[d for _, d, p in keys if p],
             skipped=skipped,
             errors=[f"{e.bare_jid}/{e.device_id}: {type(e.exception).__name__}: {e.exception}" for e in errors])

    async def cmd_refresh(self, jid: str) -> None:
        po = self.po
        async with self.lock:
            ids = await self.download_device_list(jid)
            await self.sm.update_device_list(po.NS, jid, ids)
            infos = {d.device_id: d for d in await self.sm.get_device_information(jid)}
        emit("devices", jid=jid, devices=sorted(ids),
             trust={str(i): infos[i].trust_level_name for i in sorted(ids) if i in infos},
             fingerprints={str(i): po.fingerprint(infos[i].identity_key) for i in sorted(ids) if i in infos})

    async def cmd_trust(self, jid: str, device_id: int, verb: str) -> None:
        po = self.po
        level = po.TRUST_TRUSTED if verb == "trust" else po.TRUST_DISTRUSTED
        async with self.lock:
            device = next((d for d in await self.sm.get_device_information(jid) if d.device_id == device_id), None)
            if device is None:
                await self.sm.refresh_device_list(po.NS, jid)
                device = next((d for d in await self.sm.get_device_information(jid)
                               if d.device_id == device_id), None)
            if device is None:
                raise UsageError(f"{jid} has no device {device_id} with a known identity key")
            await self.sm.set_trust(jid, device.identity_key, level)
        emit("trust", jid=jid, device=device_id, trust=level, fingerprint=po.fingerprint(device.identity_key))

    # ------------------------------------------------------------ group chat

    async def run_room_command(self, verb: str, rest: str) -> None:
        room_text, _, tail = rest.strip().partition(" ")
        tail = tail.strip()
        usage = {
            "join": "join ROOM NICK",
            "configure": "configure ROOM FIELD=VALUE...",
            "affiliate": "affiliate ROOM JID AFFILIATION",
            "gsend": "gsend ROOM TEXT",
            "gsend-plain": "gsend-plain ROOM TEXT",
            "leave": "leave ROOM",
        }[verb]
        if not room_text or (verb != "leave" and not tail) or (verb == "leave" and tail):
            raise UsageError(f"usage: {usage}")
        room_jid = self.arg_jid(room_text)
        if verb == "join":
            if " " in tail:
                raise UsageError(f"usage: {usage} (a nick without spaces)")
            await self.cmd_join(room_jid, tail)
        elif verb == "configure":
            fields: Dict[str, str] = {}
            for part in tail.split():
                var, eq, value = part.partition("=")
                if not var or not eq:
                    raise UsageError(f"usage: {usage} (got {part!r})")
                fields[var] = value
            await self.cmd_configure(room_jid, fields)
        elif verb == "affiliate":
            parts = tail.split()
            if len(parts) != 2 or parts[1] not in AFFILIATIONS:
                raise UsageError(f"usage: {usage} (AFFILIATION one of {', '.join(AFFILIATIONS)})")
            await self.cmd_affiliate(room_jid, self.arg_jid(parts[0]), parts[1])
        elif verb == "gsend":
            self.need_omemo()
            await self.cmd_gsend(room_jid, tail)
        elif verb == "gsend-plain":
            room = self.rooms.get(room_jid)
            if room is None:
                # Not joined: the room's refusal comes back as group-error.
                room = self.rooms[room_jid] = Room(room_jid, "")
            msg = self.make_message(mto=room_jid, mbody=tail, mtype="groupchat")
            room.sent[msg["id"]] = tail
            msg.send()
            emit("gsent", room=room_jid, id=msg["id"], encrypted=False)
        else:
            await self.cmd_leave(room_jid)

    def joined_room(self, room_jid: str) -> Room:
        room = self.rooms.get(room_jid)
        if room is None or not room.joined:
            raise UsageError(f"not in room {room_jid}")
        return room

    async def room_iq(self, itype: str, room_jid: str, payload: ET.Element, what: str) -> ET.Element:
        try:
            return await self.iq_send(itype, room_jid, payload)
        except IqError as e:
            raise CommandError(f"{what} in {room_jid} failed: {iq_error_condition(e)}",
                               room=room_jid, condition=iq_error_condition(e), raw=tostring(e.iq.xml))
        except IqTimeout:
            raise CommandError(f"{what} in {room_jid}: no answer", room=room_jid, condition="timeout")

    async def room_info(self, room_jid: str) -> Dict[str, Any]:
        """The room's disco#info: features (sorted) and the muc#roominfo
        form's fields (var -> value, or list for several values)."""
        result = await self.room_iq("get", room_jid, ET.Element("{%s}query" % NS_DISCO_INFO), "disco#info")
        query = result.find("{%s}query" % NS_DISCO_INFO)
        features = sorted({f.get("var") for f in (query if query is not None else [])
                           if f.tag == "{%s}feature" % NS_DISCO_INFO and f.get("var")})
        info: Dict[str, Any] = {}
        for form in (query.findall("{%s}x" % NS_DATA) if query is not None else []):
            for field in form.findall("{%s}field" % NS_DATA):
                var = field.get("var")
                if not var or var == "FORM_TYPE":
                    continue
                values = [v.text or "" for v in field.findall("{%s}value" % NS_DATA)]
                info[var] = values[0] if len(values) == 1 else values
        return {"features": features, "info": info}

    async def cmd_join(self, room_jid: str, nick: str) -> None:
        room = self.rooms.get(room_jid)
        if room is not None and room.joined:
            raise UsageError(f"already in room {room_jid} as {room.nick}")
        if room is None:
            room = self.rooms[room_jid] = Room(room_jid, nick)
        room.nick = nick
        room.occupants.clear()
        room.join_future = asyncio.get_event_loop().create_future()
        presence = self.make_presence(pto=f"{room_jid}/{nick}")
        # No <history/> limits: whatever the room sends by default.
        presence.append(ET.Element("{%s}x" % NS_MUC))
        presence.send()
        try:
            outcome = await asyncio.wait_for(room.join_future, IQ_TIMEOUT)
        except asyncio.TimeoutError:
            raise CommandError(f"join {room_jid}: no answer from the room", room=room_jid, condition="timeout")
        finally:
            room.join_future = None
        if outcome is not None:  # the error presence
            condition, raw = outcome
            raise CommandError(f"join {room_jid} refused: {condition}", room=room_jid, condition=condition, raw=raw)
        info = await self.room_info(room_jid)
        emit("joined", room=room_jid, nick=room.nick, created=room.created,
             occupants={n: o["jid"] for n, o in sorted(room.occupants.items())},
             affiliation=room.occupants.get(room.nick, {}).get("affiliation"),
             role=room.occupants.get(room.nick, {}).get("role"),
             codes=room.self_codes, **info)

    async def cmd_configure(self, room_jid: str, fields: Dict[str, str]) -> None:
        # The form first: a misspelt field would otherwise be dropped silently.
        form = await self.room_iq("get", room_jid, ET.Element("{%s}query" % NS_MUC_OWNER), "config form")
        known = {f.get("var") for f in form.iter("{%s}field" % NS_DATA)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise CommandError(f"configure {room_jid}: the room's form has no field {', '.join(unknown)}",
                               room=room_jid, condition="unknown-field", fields=sorted(v for v in known if v))
        query = ET.Element("{%s}query" % NS_MUC_OWNER)
        query.append(data_form(NS_MUC + "#roomconfig", fields))
        await self.room_iq("set", room_jid, query, "configure")
        info = await self.room_info(room_jid)
        emit("configured", room=room_jid, fields=fields, **info)

    async def cmd_affiliate(self, room_jid: str, jid: str, affiliation: str) -> None:
        query = ET.Element("{%s}query" % NS_MUC_ADMIN)
        ET.SubElement(query, "{%s}item" % NS_MUC_ADMIN, {"jid": jid, "affiliation": affiliation})
        await self.room_iq("set", room_jid, query, f"affiliate {jid} as {affiliation}")
        room = self.rooms.get(room_jid)
        if room is not None:
            room.affiliations[jid] = affiliation
        emit("affiliated", room=room_jid, jid=jid, affiliation=affiliation)

    async def fetch_affiliations(self, room: Room) -> Dict[str, str]:
        """Asks the room for its owner, admin and member lists, updates what
        we know, and returns the conditions of the refused ones."""
        refused: Dict[str, str] = {}

        async def one(affiliation: str) -> None:
            query = ET.Element("{%s}query" % NS_MUC_ADMIN)
            ET.SubElement(query, "{%s}item" % NS_MUC_ADMIN, {"affiliation": affiliation})
            try:
                result = await self.iq_send("get", room.jid, query)
            except IqError as e:
                refused[affiliation] = iq_error_condition(e)
                return
            except IqTimeout:
                refused[affiliation] = "timeout"
                return
            listed = set()
            for item in result.iter("{%s}item" % NS_MUC_ADMIN):
                try:
                    jid = bare(item.get("jid") or "")
                except ValueError:
                    continue
                listed.add(jid)
                room.affiliations[jid] = affiliation
                if item.get("nick") and item.get("nick") not in room.known:
                    room.known[item.get("nick")] = jid
            for jid, aff in list(room.affiliations.items()):
                if aff == affiliation and jid not in listed:
                    del room.affiliations[jid]

        await asyncio.gather(*(one(a) for a in ("owner", "admin", "member")))
        return refused

    async def cmd_gsend(self, room_jid: str, text: str) -> None:
        po = self.po
        omemo = po.omemo
        room = self.joined_room(room_jid)
        refused = await self.fetch_affiliations(room)
        candidates = {o["jid"] for o in room.occupants.values() if o["jid"]}
        candidates |= {j for j, a in room.affiliations.items() if a in ("owner", "admin", "member")}
        candidates.discard(self.own)
        errors = []
        anonymous = sorted(n for n, o in room.occupants.items() if not o["jid"] and n != room.nick)
        for nick in anonymous:
            errors.append({"jid": None, "nick": nick, "device": None, "reason": "unknown real JID"})
        async with self.lock:
            try:
                await self.sm.refresh_device_list(po.NS, self.own)
            except omemo.DeviceListDownloadFailed as e:
                log.warning("own device list: %s", e)
            reachable = set()
            for jid in sorted(candidates):
                try:
                    await self.sm.refresh_device_list(po.NS, jid)
                except omemo.DeviceListDownloadFailed as e:
                    errors.append({"jid": jid, "device": None, "reason": f"no device list: {e}"})
                    continue
                active = [d for d in await self.sm.get_device_information(jid) if dict(d.active).get(po.NS)]
                if not active:
                    errors.append({"jid": jid, "device": None, "reason": "no OMEMO device"})
                    continue
                reachable.add(jid)
            skipped = []
            for jid_ in sorted(reachable | {self.own}):
                for d in sorted(await self.sm.get_device_information(jid_), key=lambda d: d.device_id):
                    if (dict(d.active).get(po.NS) and d.device_id != self.device_id
                            and d.trust_level_name not in (po.TRUST_BLIND, po.TRUST_TRUSTED)):
                        skipped.append({"jid": d.bare_jid, "device": d.device_id, "trust": d.trust_level_name})
            messages = None
            enc_errors: Any = frozenset()
            while reachable:
                self.manager_cls.encrypting = True
                try:
                    messages, enc_errors = await self.sm.encrypt(frozenset(reachable),
                                                                 {po.NS: text.encode("utf-8")})
                    break
                except omemo.NoEligibleDevices as e:
                    # One recipient without a usable device must not sink the
                    # message for the others: leave it out and try again.
                    for jid in sorted(e.bare_jids):
                        errors.append({"jid": jid, "device": None,
                                       "reason": "no eligible device (untrusted, or no bundle)"})
                    reachable -= set(e.bare_jids)
                    messages = None
                finally:
                    self.manager_cls.encrypting = False
        for e in sorted(enc_errors, key=lambda e: (e.bare_jid, e.device_id)):
            errors.append({"jid": e.bare_jid, "device": e.device_id,
                           "reason": f"{type(e.exception).__name__}: {e.exception}"})
        if not messages:
            raise CommandError(f"gsend {room_jid}: no recipient can be reached", room=room_jid,
                               errors=errors, refused_lists=refused)
        message = next(iter(messages))
        encrypted = po.serialize_message(message, self.quirks)
        msg = self.make_message(mto=room_jid, mbody=FALLBACK_BODY, mtype="groupchat")
        msg.append(encrypted)
        msg.append(ET.Element("{%s}store" % NS_HINTS))
        msg.append(ET.Element("{%s}encryption" % NS_EME, {"name": "OMEMO", "namespace": OMEMO_NS}))
        room.sent[msg["id"]] = text
        msg.send()
        keys = sorted(((k.bare_jid, k.device_id, x is not None) for k, x in message.keys))
        recipients = sorted({j for j, _, _ in keys if j != self.own})
        emit("gsent", room=room_jid, id=msg["id"], encrypted=True, recipients=recipients,
             devices={j: [d for j_, d, _ in keys if j_ == j] for j in recipients},
             device_count=len([1 for j, _, _ in keys if j != self.own]),
             own_devices=[d for j, d, _ in keys if j == self.own],
             prekey_devices={j: [d for j_, d, p in keys if j_ == j and p] for j in recipients
                             if any(p for j_, _, p in keys if j_ == j)},
             skipped=skipped, errors=errors, refused_lists=refused)

    async def cmd_leave(self, room_jid: str) -> None:
        room = self.joined_room(room_jid)
        room.leave_future = asyncio.get_event_loop().create_future()
        self.make_presence(pto=f"{room_jid}/{room.nick}", ptype="unavailable").send()
        try:
            await asyncio.wait_for(room.leave_future, IQ_TIMEOUT)
        except asyncio.TimeoutError:
            raise CommandError(f"leave {room_jid}: the room did not confirm", room=room_jid, condition="timeout")
        finally:
            room.leave_future = None
        emit("left", room=room_jid)

    def handle_room_presence(self, xml: ET.Element) -> None:
        frm = JID(xml.get("from") or "")
        room = self.rooms.get(frm.bare)
        if room is None:
            return
        nick = frm.resource
        ptype = xml.get("type")
        if ptype == "error":
            condition = stanza_error_condition(xml)
            if room.join_future is not None and not room.join_future.done():
                room.join_future.set_result((condition, tostring(xml)))
            else:
                emit("group-error", room=room.jid, nick=nick or None, condition=condition,
                     stanza="presence", raw=tostring(xml))
            return
        x = xml.find("{%s}x" % NS_MUC_USER)
        if x is None or not nick:
            return
        codes = sorted(int(s.get("code")) for s in x.findall("{%s}status" % NS_MUC_USER)
                       if (s.get("code") or "").isdigit())
        item = x.find("{%s}item" % NS_MUC_USER)
        item = item if item is not None else ET.Element("item")
        try:
            real = JID(item.get("jid")).bare if item.get("jid") else None
        except InvalidJID:
            real = None
        affiliation = item.get("affiliation")
        role = item.get("role")
        available = ptype != "unavailable"
        is_self = 110 in codes
        if is_self:
            real = self.own
        previous = room.occupants.get(nick)
        if real:
            room.known[nick] = real
            if affiliation:
                room.affiliations[real] = affiliation
        elif previous is not None and previous["jid"]:
            real = previous["jid"]  # an update that no longer shows the JID
        elif available:
            room.known.pop(nick, None)  # a newcomer under a nick seen before
        if available:
            room.occupants[nick] = {"jid": real, "affiliation": affiliation, "role": role}
        else:
            room.occupants.pop(nick, None)
        emit("occupant", room=room.jid, nick=nick, jid=real, affiliation=affiliation, role=role,
             available=available, self=is_self, codes=codes)
        if not is_self:
            return
        if available:
            room.nick = nick  # the room may have changed it (status 210)
            room.self_codes = codes
            if room.join_future is not None and not room.join_future.done():
                room.joined = True
                room.created = 201 in codes
                room.join_future.set_result(None)
            return
        if 303 in codes and item.get("nick"):
            room.nick = item.get("nick")  # a nick change, not a departure
            return
        room.joined = False
        room.occupants.clear()
        if room.leave_future is not None and not room.leave_future.done():
            room.leave_future.set_result(None)

    async def handle_groupchat(self, xml: ET.Element) -> None:
        frm = JID(xml.get("from") or "")
        room = self.rooms.get(frm.bare)
        nick = frm.resource or None
        body_elt = xml.find("{%s}body" % NS_CLIENT)
        body = (body_elt.text or "") if body_elt is not None else None
        encrypted = xml.find("{%s}encrypted" % OMEMO_NS)
        if body is None and encrypted is None:
            x = xml.find("{%s}x" % NS_MUC_USER)
            if x is not None and nick is None:
                codes = sorted(int(s.get("code")) for s in x.findall("{%s}status" % NS_MUC_USER)
                               if (s.get("code") or "").isdigit())
                if codes:
                    emit("room-config-changed", room=frm.bare, codes=codes, raw=tostring(xml))
            return  # subject changes, chat states and the like
        own = room is not None and nick is not None and nick == room.nick
        jid = self.own if own else (room.real_jid(nick) if room is not None else None)
        common: Dict[str, Any] = {"room": frm.bare, "nick": nick, "jid": jid, "id": xml.get("id"),
                                  "type": "groupchat", "own": own,
                                  "delayed": xml.find("{%s}delay" % NS_DELAY) is not None}
        raw = tostring(xml)
        if encrypted is None or not self.omemo_enabled:
            fields = dict(common, text=body, encrypted=False, sender_device=None, prekey=None)
            if encrypted is not None:
                fields["omemo_element"] = True
            emit("groupmessage", **fields, raw=raw)
            return
        try:
            sid = self.po.parse_encrypted(encrypted).sid
        except self.po.WireError:
            sid = None
        if sid is not None and sid == self.device_id and (own or jid == self.own):
            # Our own message coming back: its keys are for the others.
            common["own"] = True
            text = room.sent.get(xml.get("id") or "") if room is not None else None
            emit("groupmessage", **common, text=text, encrypted=True, sender_device=sid, prekey=None,
                 decrypted=False, raw=raw)
            return
        if jid is None:
            emit("group-decrypt-error", **common, sender_device=sid, error="unknown real JID", raw=raw)
            return
        await self.decrypt(xml, encrypted, jid, jid, common, group=True)



def start_stdin_reader(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> None:
    """A thread, because stdin may be a file, a pipe or a terminal; None
    marks end of input (treated as quit)."""

    def reader() -> None:
        for raw in sys.stdin.buffer:
            loop.call_soon_threadsafe(queue.put_nowait, raw.decode("utf-8", errors="replace"))
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=reader, name="stdin", daemon=True).start()


def load_resource(state: str, given: Optional[str]) -> str:
    """A stable resource per state folder, so two devices of one account
    never kick each other off and a restart comes back as itself."""
    if given:
        return given
    path = os.path.join(state, "resource")
    if os.path.exists(path):
        with open(path, "r", encoding="utf-8") as f:
            value = f.read().strip()
        if value:
            return value
    value = "peer-" + secrets.token_hex(4)
    with open(path, "w", encoding="utf-8") as f:
        f.write(value + "\n")
    return value


def main(argv) -> int:
    parser = argparse.ArgumentParser(description="legacy OMEMO peer for end-to-end tests")
    parser.add_argument("--jid", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5222)
    parser.add_argument("--state", required=True, help="folder for identity, sessions and trust")
    parser.add_argument("--device-id", type=int, default=None,
                        help="device id for a new identity (must match an existing one)")
    parser.add_argument("--reinstall", action="store_true",
                        help="with --device-id and a new state: take over an id already on "
                             "the list with a new identity")
    parser.add_argument("--no-omemo", action="store_true", help="plain XMPP client only")
    parser.add_argument("--manual-trust", action="store_true",
                        help="new devices stay untrusted until the 'trust' command")
    parser.add_argument("--resource", default=None)
    parser.add_argument("--quirk", action="append", default=[],
                        choices=["no-prekey-attr", "iv-first", "bundle-item-1"],
                        help="behave like a deployed client that deviates (repeatable)")
    parser.add_argument("--sasl-mech", default="PLAIN", help="SASL mechanism ('' lets slixmpp choose)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to become ready")
    parser.add_argument("--debug", action="store_true", help="library logs on stderr")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG if args.debug else logging.ERROR,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        args.jid = bare(args.jid)
    except ValueError as e:
        emit("error", text=str(e))
        return 2
    if args.reinstall and args.device_id is None:
        emit("error", text="--reinstall needs --device-id")
        return 2
    os.makedirs(args.state, exist_ok=True)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    peer = Peer(args, load_resource(args.state, args.resource))
    try:
        return loop.run_until_complete(peer.run())
    except KeyboardInterrupt:
        return 1


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    # The stdin thread may sit in a blocking read: leave without joining it.
    os._exit(code)
