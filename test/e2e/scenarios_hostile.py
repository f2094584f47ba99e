"""Hostile peers: what another account may throw at the plugin on purpose.
A prekey message replayed a hundred times, a header with keys for ten
thousand devices, a payload far beyond any limit, a device list of a
hundred thousand ids, a bundle whose signature does not verify, an identity
key that changes with every message, carbons and own-device-list events
forged by a stranger.

Every scenario ends the same way: the thing was refused and the refusal
said so (the plugin's debug log or a conversation notice; for what no
server passes on, Prosody's log), the client is alive with no GLib
criticals, its resident memory grew by less than MEMORY_BOUND_KIB, and an
ordinary encrypted message still goes both ways between the same two
parties. Each scenario prints one line of figures (timings, VmRSS before
and after) and writes it to figures.txt in its state folder."""

import base64
import os
import re
import time

from harness import TIMEOUT_SCALE, VALGRIND, parse_xml
from scenarios_devices import (NODE_BUNDLES, NODE_DEVICELIST, NS, NS_PUBSUB,
                               devicelist_publish_iq, messages_out, start_alice_with_peer_bob,
                               wait_devicelist_event)

HERE = os.path.dirname(os.path.abspath(__file__))
TYPES_H = os.path.join(HERE, "..", "..", "headers", "omemo_types.h")

# Resident memory may grow by less than this during an attack (memcheck
# keeps shadow memory and freed blocks: more under E2E_VALGRIND=1).
MEMORY_BOUND_KIB = (150 if VALGRIND else 50) * 1024
# Prosody 0.12's mod_c2s: c2s_stanza_size_limit defaults to 256 KiB; a
# longer stanza ends the sender's stream (policy-violation).
PROSODY_STANZA_LIMIT = 256 * 1024
# The peer's fallback <body> (peer.py): only its messages with a payload.
PEER_FALLBACK = "your client could not decrypt it"

# What the plugin writes (src/manager.c, src/err.c).
NOT_FOR_THIS_DEVICE = "was not encrypted for this device"
COULD_NOT_DECRYPT = "could not be decrypted"
TOO_MANY_KEYS = "carries too many keys"
DUPLICATE_LOG = "duplicate message from %s dropped"
NOT_SENT = "NOT sent"


# ---- limits of the plugin's wire parser ------------------------------------------

def wire_limit(name):
    """A #define of headers/omemo_types.h, so the scenarios follow the
    plugin's limits instead of copying them."""
    with open(TYPES_H, encoding="utf-8") as f:
        m = re.search(r"^#define\s+%s\s+\(?\s*(\d+(?:\s*\*\s*\d+)*)\s*\)?" % re.escape(name),
                      f.read(), re.M)
    assert m, "%s not found in %s" % (name, TYPES_H)
    value = 1
    for factor in m.group(1).split("*"):
        value *= int(factor)
    return value


# ---- figures, memory, health ------------------------------------------------------

def figure(ctx, text):
    line = "%s: %s" % (ctx.name, text)
    with open(os.path.join(ctx.workdir, "figures.txt"), "a", encoding="utf-8") as f:
        f.write(line + "\n")
    print("    figures " + line, flush=True)


def rss_kib(client):
    """VmRSS of the client's process, in KiB."""
    with open("/proc/%d/status" % client.proc.pid, encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %s" % client.name)


def memory_checked(client, before_kib, what):
    """Asserts the bound; returns a short text with the figures."""
    after = rss_kib(client)
    growth = after - before_kib
    assert growth < MEMORY_BOUND_KIB, "%s: VmRSS grew by %d KiB (%d -> %d) after %s" % (
        client.name, growth, before_kib, after, what)
    return "VmRSS %d -> %d KiB (%+d)" % (before_kib, after, growth)


def assert_healthy(client):
    """Alive, no GLib criticals or errors (what libpurple reports for a
    failed assertion), and no garbage on its event stream."""
    assert client.alive(), "%s is not running" % client.name
    bad = client.find("glib-log", level=lambda lv: lv in ("critical", "error"))
    assert not bad, "%s: GLib criticals: %s" % (client.name, bad[:3])
    assert not client.find("garbage"), client.find("garbage")[:3]


def ms(seconds):
    return "%.0f ms" % (seconds * 1000)


# ---- the debug log --------------------------------------------------------------------

def log_mark(client):
    try:
        return os.path.getsize(client.log_path())
    except OSError:
        return 0


def log_since(client, mark):
    with open(client.log_path(), "rb") as f:
        f.seek(mark)
        return f.read().decode("utf-8", "replace")


def plugin_lines(client, mark):
    """The plugin's own debug lines (category "omemo") since mark."""
    return [line for line in log_since(client, mark).splitlines() if " omemo: " in line]


def wait_log(client, predicate, mark, count=1, timeout=10):
    """Until `count` of the plugin's debug lines since mark satisfy
    predicate (a substring or a callable); returns them. The client writes
    and flushes each line as it happens, so this polls the file."""
    test = predicate if callable(predicate) else (lambda line: predicate in line)
    deadline = time.monotonic() + timeout * TIMEOUT_SCALE
    while True:
        found = [line for line in plugin_lines(client, mark) if test(line)]
        if len(found) >= count:
            return found
        if time.monotonic() > deadline or not client.alive():
            raise AssertionError("%s: %d of %d debug lines matching %r since the mark; plugin "
                                 "lines:\n%s" % (client.name, len(found), count, predicate,
                                                 "\n".join(plugin_lines(client, mark)[-20:])))
        time.sleep(0.05)


def wait_server_log(ctx, text, timeout=10):
    deadline = time.monotonic() + timeout * TIMEOUT_SCALE
    while True:
        with open(ctx.server.log_path, "rb") as f:
            log = f.read().decode("utf-8", "replace")
        if text in log:
            return [line for line in log.splitlines() if text in line]
        assert time.monotonic() < deadline, "prosody.log never said %r" % text
        time.sleep(0.05)


# ---- conversations and messages ---------------------------------------------------------

def with_jid(bare):
    """A conversation name for bare (full JID when a message opened it)."""
    return lambda name: (name or "").split("/")[0] == bare


def notices(client, bare, since=None):
    return client.find("conv", flags="system", conv=with_jid(bare), since=since)


def alice_to_peer(alice, peer, text, devices=None):
    """alice writes to peer's account: peer decrypts it, the text is
    nowhere on alice's wire, keys went to exactly `devices` if given.
    Returns alice's event mark from before sending."""
    since, p = alice.mark(), peer.mark()
    alice.send(peer.bare, text)
    got = peer.wait_for("message", text=text, since=p, timeout=20)
    assert got["encrypted"] is True, got
    alice.wait_for("conv", flags="send", plain=text, since=since)
    out = [el for _, el in messages_out(alice, peer.bare, since)
           if el.find("encrypted/payload") is not None]
    assert len(out) == 1, alice.xml_out("<message", since=since)
    if devices is not None:
        rids = {int(k.get("rid")) for k in out[0].iter("key")}
        assert rids == set(devices), (sorted(rids), sorted(devices))
    assert not alice.xml_out(text, since=since), "plaintext on alice's wire"
    return since


def peer_to_alice(peer, alice, text):
    since = alice.mark()
    peer.send(alice.bare, text)
    got = alice.wait_for("conv", flags="recv", plain=text, since=since, timeout=20)
    assert got["conv"].split("/")[0] == peer.bare, got
    assert not [x for x in alice.xml_in("<message", since=since) if text in x], \
        "the text crossed the wire in the clear"
    return got


def genuine_shows_once(alice, bob, genuine, text):
    """bob sends the genuine message (raw XML) with text: alice shows it,
    once."""
    since = alice.mark()
    bob.send_raw(genuine)
    alice.wait_for("conv", flags="recv", plain=text, since=since, timeout=20)
    assert len(alice.find("conv", plain=text)) == 1


def both_ways(alice, peer, tag):
    """The session is unharmed: one message each way."""
    alice_to_peer(alice, peer, "alice after %s" % tag)
    peer_to_alice(peer, alice, "peer after %s" % tag)


def resendable(xml):
    """A stanza alice received, as its sender can send it again: the
    server's stamps (from, stanza-id, delay) go."""
    head, sep, rest = xml.partition(">")
    head = re.sub(r"\sfrom=(['\"])[^'\"]*\1", "", head)
    rest = re.sub(r"<stanza-id [^>]*/>", "", rest)
    rest = re.sub(r"<delay [^>]*/>", "", rest)
    return head + sep + rest


def capture(alice, peer, text):
    """peer's genuine OMEMO message with text, withheld from alice's
    plugin (as if the server had not delivered it): its keys stay unused.
    Returns the stanza, ready to be sent again with send-raw."""
    alice.drop_in(PEER_FALLBACK)
    since = alice.mark()
    peer.send(alice.bare, text)
    xml = alice.wait_for("dropped", since=since, timeout=20)["xml"]
    alice.drop_in_clear()
    assert "<payload>" in xml and text not in xml, xml
    return resendable(xml)


def b64(data):
    return base64.b64encode(data).decode("ascii")


def crafted(to, msg_id, sid, keys_xml, payload=b"\0" * 40):
    """An OMEMO chat message with the given <key> elements; random IV."""
    return ("<message to='%s' type='chat' id='%s'><encrypted xmlns='%s'><header sid='%d'>%s"
            "<iv>%s</iv></header>%s</encrypted><store xmlns='urn:xmpp:hints'/></message>"
            % (to, msg_id, NS, sid, keys_xml, b64(os.urandom(12)),
               "<payload>%s</payload>" % b64(payload) if payload is not None else ""))


def junk_keys(n, avoid):
    """n <key> elements of one byte each (0x33, as a Signal message starts)
    for distinct rids from 1 up, none in avoid; unpadded base64, so ten
    thousand of them fit in one stanza Prosody lets through."""
    out, rid = [], 1
    while len(out) < n:
        if rid not in avoid:
            out.append("<key rid='%d'>Mw</key>" % rid)
        rid += 1
    return "".join(out)


def wait_bundle_published(client, timeout=20):
    """Until the server confirmed the bundle the (re)started client
    publishes at sign-on: its OMEMO side is up."""
    out = parse_xml(client.wait_xml_out(lambda el: el.tag == "iq" and any(
        (p.get("node") or "").startswith(NODE_BUNDLES) for p in el.iter("publish")),
        timeout=timeout)["xml"])
    ev = client.wait_xml_in(lambda el: el.tag == "iq" and el.get("id") == out.get("id")
                            and el.get("type") in ("result", "error"), timeout=timeout)
    assert parse_xml(ev["xml"]).get("type") == "result", ev["xml"]


def sent_raw_time(peer, since):
    return peer.wait_for("sent-raw", since=since)["_t"]


# ---- 1. a prekey message replayed --------------------------------------------------------

def scenario_hostile_prekey_message_replayed_100_times(ctx):
    alice, bob, alice_id, bob_id = start_alice_with_peer_bob(ctx)
    rss0 = rss_kib(alice)

    text = "the one genuine prekey message"
    since = alice.mark()
    bob.send(alice.bare, text)
    alice.wait_for("conv", flags="recv", plain=text, since=since, timeout=20)
    arrived = alice.xml_in(lambda el: el.tag == "message" and el.find("encrypted") is not None,
                           since=since)
    assert len(arrived) == 1, arrived
    el = parse_xml(arrived[0])
    ours = [k for k in el.iter("key") if k.get("rid") == str(alice_id)]
    assert len(ours) == 1 and ours[0].get("prekey") == "true", arrived[0]
    msg_id = el.get("id")
    # alice completed the session; bob writes normal messages from now on.
    bob.wait_for("key-transport", sender_device=alice_id, timeout=20)

    replay = resendable(arrived[0])
    mark, log0, b0 = alice.mark(), log_mark(alice), bob.mark()
    for _ in range(99):
        bob.send_raw(replay)
    marker = "bob's first words after the replays"
    bob.send(alice.bare, marker)
    done = alice.wait_for("conv", flags="recv", plain=marker, since=mark, timeout=60)
    elapsed = done["_t"] - sent_raw_time(bob, b0)

    copies = alice.xml_in(lambda e: e.tag == "message" and e.get("id") == msg_id, since=mark)
    assert len(copies) == 99, "%d of 99 replays reached alice" % len(copies)
    dups = wait_log(alice, DUPLICATE_LOG % bob.bare, log0, count=99)
    assert len(dups) == 99, len(dups)
    # Shown once; no notice, no answer: a replay is not a new session.
    assert len(alice.find("conv", plain=text)) == 1, alice.find("conv", plain=text)
    assert not notices(alice, bob.bare, since=mark), notices(alice, bob.bare, since=mark)
    assert not messages_out(alice, bob.bare, mark), \
        "alice answered replays: %s" % [x for x, _ in messages_out(alice, bob.bare, mark)]
    assert not alice.find("request", since=mark)

    both_ways(alice, bob, "the replays")
    assert len(alice.find("conv", plain=text)) == 1
    assert_healthy(alice)
    figure(ctx, "99 replays refused as duplicates, %s until the next real message showed "
           "(%.1f ms per stanza); %s" % (ms(elapsed), elapsed * 1000 / 100,
                                          memory_checked(alice, rss0, "99 replays")))


# ---- 2. keys for ten thousand devices ---------------------------------------------------

def scenario_hostile_header_with_10000_keys(ctx):
    max_keys = wire_limit("OMEMO_MESSAGE_MAX_KEYS")
    alice, bob, alice_id, bob_id = start_alice_with_peer_bob(ctx)
    peer_to_alice(bob, alice, "a session first")
    rss0 = rss_kib(alice)
    timings = []

    def attack(label, stanza, expect_notice=None, expect_text=None):
        size = len(stanza.encode())
        assert size < PROSODY_STANZA_LIMIT - 4096, "%s: %d bytes would not pass Prosody" % (
            label, size)
        since, b = alice.mark(), bob.mark()
        bob.send_raw(stanza)
        # Prosody needs seconds for such a stanza (under load, ten).
        if expect_notice:
            ev = alice.wait_for("conv", flags="system", conv=with_jid(bob.bare),
                                plain__contains=expect_notice, since=since, timeout=60)
        else:
            ev = alice.wait_for("conv", flags="recv", plain=expect_text, since=since,
                                timeout=60)
        took = ev["_t"] - sent_raw_time(bob, b)
        # The server archives it twice (MAM) before delivering: the
        # client's own share starts when the whole stanza was parsed.
        arrived = alice.wait_xml_in(lambda el: el.tag == "message" and el.find("encrypted")
                                    is not None, since=since)
        timings.append("%s %s in the client, %s from the peer (%d KiB)"
                       % (label, ms(ev["_t"] - arrived["_t"]), ms(took), size // 1024))
        # No work per listed device: no bundle or list requests, nothing
        # sent (the bundle republished after the first prekey message may
        # go out meanwhile).
        alice.sync()
        out = alice.xml_out(since=since)
        assert not [x for x in out if "<items" in x or "<message" in x], out[:5]
        assert len(out) <= 2, out
        assert not alice.find("conv", flags="recv", since=since, plain=lambda p: p != expect_text)
        return ev

    # Exactly the limit, none of them ours: parsed, and "not for this device".
    stanza = crafted(alice.bare, "keys-10000", bob_id, junk_keys(max_keys, {alice_id}))
    assert stanza.count("<key ") == max_keys == 10000
    attack("10000 keys, none ours:", stanza, NOT_FOR_THIS_DEVICE)

    # One more: refused by the parser, unread.
    stanza = crafted(alice.bare, "keys-10001", bob_id, junk_keys(max_keys + 1, {alice_id}))
    ev = attack("10001 keys:", stanza, TOO_MANY_KEYS)
    assert bob.bare in ev["plain"], ev

    # A genuine message for alice hidden among 9,999 others: read and shown.
    text = "one real key among ten thousand"
    genuine = capture(alice, bob, text)
    header = re.search(r"<header [^>]*>", genuine)
    assert header, genuine
    at = header.end()
    padded = genuine[:at] + junk_keys(max_keys - 1, {alice_id, bob_id}) + genuine[at:]
    assert padded.count("<key ") == max_keys
    attack("9999 junk + 1 real key:", padded, expect_text=text)
    assert len(alice.find("conv", plain=text)) == 1

    both_ways(alice, bob, "ten thousand keys")
    assert_healthy(alice)
    figure(ctx, "; ".join(timings) + " (until alice's notice or message); "
           + memory_checked(alice, rss0, "three 10,000-key headers"))


# ---- 3. a 10 MiB payload ------------------------------------------------------------------

def scenario_hostile_10mib_payload(ctx):
    payload_max = wire_limit("OMEMO_PAYLOAD_MAX")
    alice, bob, alice_id, bob_id = start_alice_with_peer_bob(ctx)
    both_ways(alice, bob, "setting up")
    rss0 = rss_kib(alice)

    # 10 MiB of payload (13.3 MiB of base64) in an otherwise well-formed
    # OMEMO message for alice.
    big = crafted(alice.bare, "payload-10mib", bob_id,
                  "<key rid='%d'>%s</key>" % (alice_id, b64(b"\x33" + os.urandom(60))),
                  payload=os.urandom(10 * 1024 * 1024))
    assert len(big) > 13 * 1024 * 1024
    mark = alice.mark()
    bob.expected_exit = True  # the server is going to throw it out
    t0 = time.monotonic()
    bob.send_raw(big)
    # Prosody cuts the stream after its 256 KiB: the peer is disconnected.
    bob.wait_for("disconnected", timeout=60)
    status = bob.wait_gone(timeout=30)
    cut = time.monotonic() - t0
    assert status != 0, status
    wait_server_log(ctx, "Received invalid XML (stanza-too-large)")
    wait_server_log(ctx, "<policy-violation")

    # Nothing of it reached alice, who noticed nothing but bob leaving.
    alice.sync()
    assert not alice.xml_in("payload-10mib", since=mark)
    assert not alice.find("conv", since=mark), alice.find("conv", since=mark)
    assert not [x for x in alice.xml_in(since=mark) if len(x) > PROSODY_STANZA_LIMIT]
    assert_healthy(alice)
    rss_after_big = rss_kib(alice)

    # bob comes back. The largest payload the server lets through (well
    # under the plugin's own limit) with a real key: the key decrypts, the
    # payload fails its check, and the message key is not spent.
    bob.restart()
    bob.wait_ready()
    assert payload_max > PROSODY_STANZA_LIMIT, "the plugin's limit is reachable here"
    text = "the genuine message behind a swollen copy"
    genuine = capture(alice, bob, text)
    swollen_payload = os.urandom(180 * 1024)
    swollen = re.sub(r"<payload>[^<]*</payload>", "<payload>%s</payload>" % b64(swollen_payload),
                     genuine)
    assert len(swollen) < PROSODY_STANZA_LIMIT - 4096, len(swollen)
    since, b = alice.mark(), bob.mark()
    bob.send_raw(swollen)
    ev = alice.wait_for("conv", flags="system", conv=with_jid(bob.bare),
                        plain__contains=COULD_NOT_DECRYPT, since=since, timeout=30)
    assert "integrity check" in ev["plain"], ev
    swollen_ms = ev["_t"] - sent_raw_time(bob, b)
    assert not alice.find("conv", flags="recv", since=since)
    genuine_shows_once(alice, bob, genuine, text)

    both_ways(alice, bob, "the 10 MiB payload")
    assert_healthy(alice)
    figure(ctx, "10 MiB payload: Prosody closed the peer's stream (stanza-too-large, "
           "policy-violation) %s after the send; the plugin client never saw it (VmRSS %d -> "
           "%d KiB); a 180 KiB payload with a real key: refused in %s; %s"
           % (ms(cut), rss0, rss_after_big, ms(swollen_ms),
              memory_checked(alice, rss0, "the 10 MiB payload")))


# ---- 4. a device list of 100,000 ids --------------------------------------------------------

def scenario_hostile_device_list_too_long(ctx):
    list_max = wire_limit("OMEMO_DEVICELIST_MAX")
    alice, bob, alice_id, bob_id = start_alice_with_peer_bob(ctx)
    alice_to_peer(alice, bob, "before the flood", devices={bob_id})
    rss0 = rss_kib(alice)

    # 100,000 ids: about 2 MB of list, which Prosody refuses to take from
    # the publisher at all.
    admin = ctx.peer("bob", name="bob-flood", omemo=False)
    admin.wait_ready()
    huge = devicelist_publish_iq("flood-100000", [bob_id] + list(range(1, 100000)))
    assert huge.count("<device ") == 100000
    mark, b = alice.mark(), bob.mark()
    admin.expected_exit = True
    admin.send_raw(huge)
    admin.wait_for("disconnected", timeout=60)
    assert admin.wait_gone(timeout=30) != 0
    wait_server_log(ctx, "stanza-too-large")
    bob.refresh(bob.bare)
    assert bob.wait_for("devices", jid=bob.bare, since=b)["devices"] == [bob_id]

    # The longest list that gets through: 10,000 ids, ten times the
    # plugin's limit. Stored by the server and pushed to alice.
    n = 10000
    assert n > list_max
    admin2 = ctx.peer("bob", name="bob-flood2", omemo=False)
    admin2.wait_ready()
    stanza = devicelist_publish_iq("flood-10000", [bob_id] + list(range(1, n)))
    assert len(stanza) < PROSODY_STANZA_LIMIT - 4096, len(stanza)
    log0, a2 = log_mark(alice), admin2.mark()
    admin2.send_raw(stanza)
    answer = admin2.wait_for("iq-result", id="flood-10000", since=a2, timeout=30)
    assert answer["type"] == "result", answer
    t_sent = sent_raw_time(admin2, a2)
    pushed = alice.wait_xml_in(lambda el: el.tag == "message" and el.find(".//items") is not None
                               and el.find(".//items").get("node") == NODE_DEVICELIST
                               and len(el.findall(".//device")) == n, since=mark, timeout=30)
    s0 = alice.mark()
    alice.sync()
    push_ms = pushed["_t"] - t_sent
    # The refusal happens while the stanza is handled: the next command
    # (the sync's echo) bounds the client's share.
    client_ms = alice.wait_for("echo", since=s0)["_t"] - pushed["_t"]
    refused = wait_log(alice, lambda line: "device list event from %s refused" % bob.bare in line
                       and "too many devices" in line, log0)
    push_rss = memory_checked(alice, rss0, "a pushed 10,000-id list")

    # The old list stays in effect: the next message goes to bob's one
    # device, and no bundle of the 9,999 others is asked for.
    since = alice_to_peer(alice, bob, "after the pushed flood", devices={bob_id})
    assert not alice.xml_out(lambda el: el.tag == "iq" and any(
        (i.get("node") or "").startswith(NODE_BUNDLES) for i in el.iter("items")), since=since)
    assert not [e for e in notices(alice, bob.bare, since=mark) if "new OMEMO devices" in
                (e.get("plain") or "")], notices(alice, bob.bare, since=mark)
    assert_healthy(alice)

    # A restarted client fetches the list when it first writes to bob: the
    # fetched list is refused the same way, the stored one is used.
    alice.restart()
    alice.wait_signed_on()
    wait_bundle_published(alice)
    rss1 = rss_kib(alice)
    log1, mark = log_mark(alice), alice.mark()
    since = alice_to_peer(alice, bob, "after the fetched flood", devices={bob_id})
    # From the list's arrival to the message leaving.
    got_list = alice.wait_xml_in(lambda el: el.tag == "iq" and len(el.findall(".//device")) == n,
                                 since=mark)
    sent = alice.wait_xml_out(lambda el: el.tag == "message" and el.find("encrypted/payload")
                              is not None, since=mark)
    fetch_ms = sent["_t"] - got_list["_t"]
    wait_log(alice, lambda line: "device list of %s refused" % bob.bare in line
             and "too many devices" in line, log1)
    assert alice.xml_out(lambda el: el.tag == "iq" and any(
        i.get("node") == NODE_DEVICELIST for i in el.iter("items")), since=mark), \
        "alice did not fetch bob's list"
    assert not alice.xml_out(lambda el: el.tag == "iq" and any(
        (i.get("node") or "").startswith(NODE_BUNDLES) for i in el.iter("items")), since=since)
    fetch_rss = memory_checked(alice, rss1, "a fetched 10,000-id list")

    # bob's account publishes its real list again. The peer device that
    # took the flood in retires (python-omemo would now ask for the bundles
    # of all 10,000 devices before it writes); a new device of bob answers.
    assert bob.quit() == 0
    mark, a2 = alice.mark(), admin2.mark()
    admin2.send_raw(devicelist_publish_iq("restore", [bob_id]))
    assert admin2.wait_for("iq-result", id="restore", since=a2)["type"] == "result"
    fresh = ctx.peer("bob", name="bob-fresh")
    fresh_id = fresh.wait_ready()["device_id"]
    wait_devicelist_event(alice, bob.bare, lambda ids: ids == {bob_id, fresh_id}, since=mark)
    alice_to_peer(alice, fresh, "alice after the device list flood", devices={bob_id, fresh_id})
    peer_to_alice(fresh, alice, "bob after the device list flood")
    assert_healthy(alice)
    figure(ctx, "100,000 ids (%d KiB): Prosody closed the publisher's stream; 10,000 ids "
           "(%d KiB, limit %d): push refused (%s), %s from publish to delivery, at most %s in "
           "the client, %s; fetched list refused, message out %s after the list arrived, %s"
           % (len(huge) // 1024, len(stanza) // 1024, list_max, refused[0].split(": ", 1)[-1],
              ms(push_ms), ms(client_ms), push_rss, ms(fetch_ms), fetch_rss))


# ---- 5. a bundle whose signature does not verify ------------------------------------------------

def corrupted_bundle_publish(raw_result, node, iq_id):
    """From an items result holding a bundle: a publish of the same bundle
    with one bit of the signed prekey's signature flipped."""
    el = parse_xml(raw_result)
    bundle = next(b for b in el.iter("bundle") if b.get("_ns") == NS)
    sig = bytearray(base64.b64decode("".join((bundle.findtext("signedPreKeySignature")
                                               or "").split())))
    assert len(sig) == 64, len(sig)
    sig[5] ^= 0x01
    spk = bundle.find("signedPreKeyPublic")
    prekeys = "".join("<preKeyPublic preKeyId='%s'>%s</preKeyPublic>"
                      % (p.get("preKeyId"), (p.text or "").strip())
                      for p in bundle.iter("preKeyPublic"))
    body = ("<bundle xmlns='%s'><signedPreKeyPublic signedPreKeyId='%s'>%s</signedPreKeyPublic>"
            "<signedPreKeySignature>%s</signedPreKeySignature><identityKey>%s</identityKey>"
            "<prekeys>%s</prekeys></bundle>"
            % (NS, spk.get("signedPreKeyId"), (spk.text or "").strip(), b64(bytes(sig)),
               (bundle.findtext("identityKey") or "").strip(), prekeys))
    return ("<iq type='set' id='%s'><pubsub xmlns='%s'><publish node='%s'><item id='current'>"
            "%s</item></publish><publish-options><x xmlns='jabber:x:data' type='submit'>"
            "<field var='FORM_TYPE' type='hidden'><value>%s#publish-options</value></field>"
            "<field var='pubsub#access_model'><value>open</value></field></x>"
            "</publish-options></pubsub></iq>" % (iq_id, NS_PUBSUB, node, body, NS_PUBSUB))


def scenario_hostile_bundle_with_bad_signature(ctx):
    alice, bob, alice_id, bob_id = start_alice_with_peer_bob(ctx)
    pep = alice.mark()
    bob2 = ctx.peer("bob", name="bob2")
    bob2_id = bob2.wait_ready()["device_id"]
    wait_devicelist_event(alice, bob.bare, lambda ids: ids == {bob_id, bob2_id}, since=pep)

    # bob2's bundle, republished with a signature that does not verify.
    node = NODE_BUNDLES + str(bob2_id)
    m = bob2.mark()
    bob2.send_raw("<iq type='get' id='get-b2'><pubsub xmlns='%s'><items node='%s' "
                  "max_items='1'/></pubsub></iq>" % (NS_PUBSUB, node))
    got = bob2.wait_for("iq-result", id="get-b2", since=m)
    assert got["type"] == "result", got
    m = bob2.mark()
    bob2.send_raw(corrupted_bundle_publish(got["raw"], node, "bad-sig"))
    assert bob2.wait_for("iq-result", id="bad-sig", since=m)["type"] == "result"
    rss0 = rss_kib(alice)

    timings = []
    for attempt, text in enumerate(("first words for bob's good device",
                                    "second words, the bundle is still bad")):
        since, log0, b2 = alice.mark(), log_mark(alice), bob2.mark()
        t0 = time.monotonic()
        alice_to_peer(alice, bob, text, devices={bob_id})
        notice = alice.wait_for("conv", flags="system", conv=with_jid(bob.bare), since=since,
                                plain__contains="did not get the message above")
        timings.append(ms(notice["_t"] - t0))
        assert "Device %d: its key bundle is unusable" % bob2_id in notice["plain"], notice
        assert "invalid signature" in notice["plain"], notice
        # The bundle was fetched (each time: a refusal is not remembered as
        # a session) and refused, with the reason in the debug log.
        assert alice.xml_out(lambda el: el.tag == "iq" and any(
            i.get("node") == node for i in el.iter("items")), since=since), attempt
        wait_log(alice, lambda line: "device %d of %s skipped" % (bob2_id, bob.bare) in line
                 and "invalid signature" in line, log0)
        bob2.sync()
        assert not bob2.find("message", text=text, since=b2), "bob2 read it"
        assert bob2.find("decrypt-error", since=b2), bob2.events[-5:]

    # No session: the status says so.
    mark = alice.mark()
    assert alice.cmd(bob.bare, "/omemo status")["status"] == 0
    status = alice.wait_for("conv", flags="system", plain__contains="This device", since=mark)
    assert "Device %d: no session yet" % bob2_id in status["plain"], status
    assert "Device %d: session ready" % bob_id in status["plain"], status

    peer_to_alice(bob, alice, "bob answers from his good device")
    assert_healthy(alice)
    figure(ctx, "bad signed-prekey signature: device skipped and named, message to the other "
           "device, send to notice %s; %s" % (" and ".join(timings),
                                              memory_checked(alice, rss0, "bad bundles")))


# ---- 6. an identity key that changes with every message ------------------------------------------

def scenario_hostile_identity_changes_every_message(ctx):
    alice, bob, alice_id, bob_id = start_alice_with_peer_bob(ctx)
    both_ways(alice, bob, "setting up")
    fingerprints = [bob.wait_ready()["fingerprint"]]
    rss0 = rss_kib(alice)
    timings = []
    key_transports = 0

    current = bob
    for n in range(1, 4):
        assert current.quit() == 0
        current = ctx.peer("bob", name="bob-key%d" % n, device_id=bob_id,
                           extra_args=["--reinstall"])
        ready = current.wait_ready()
        assert ready["device_id"] == bob_id, ready
        assert ready["fingerprint"] not in fingerprints, ready
        fingerprints.append(ready["fingerprint"])
        spaced = " ".join(ready["fingerprint"][i:i + 8] for i in range(0, 64, 8))

        # It writes: shown, marked undecided; the change announced and asked.
        text = "message number %d from yet another key" % n
        since = round_start = alice.mark()
        current.send(alice.bare, text)
        got = alice.wait_for("conv", flags="recv", plain__contains=text, since=since,
                             timeout=20)
        assert "undecided" in got["plain"].split(text)[0], got
        changed = alice.wait_for("conv", flags="system", plain__contains="DIFFERENT key",
                                 since=since)
        assert spaced in changed["plain"] and str(bob_id) in changed["plain"], changed
        timings.append(ms(changed["_t"] - current.wait_for("sent")["_t"]))
        alice.wait_for("request", since=since, primary__contains="new key")

        # alice answers: nothing is encrypted for the undecided key.
        reply = "reply number %d must wait for a decision" % n
        since, c = alice.mark(), current.mark()
        alice.send(bob.bare, reply)
        notice = alice.wait_for("conv", flags="system", plain__contains=NOT_SENT, since=since)
        assert reply in notice["plain"], notice
        assert not alice.xml_out(reply, since=since)
        assert not [el for _, el in messages_out(alice, bob.bare, since)
                    if el.find("encrypted/payload") is not None]
        current.sync()
        assert not current.find("message", since=c), current.find("message", since=c)
        # All that went to bob this round: the key transport answering the
        # prekey message (no payload, no body), which completes the session
        # without carrying anything of alice's.
        sent = [el for _, el in messages_out(alice, bob.bare, round_start)]
        assert all(el.find("encrypted") is not None and el.find("encrypted/payload") is None
                   and el.find("body") is None for el in sent), [
            x for x, _ in messages_out(alice, bob.bare, round_start)]
        key_transports += len(sent)

    # Every change was announced once, none accepted silently.
    announced = alice.find("conv", flags="system", plain__contains="DIFFERENT key")
    assert len(announced) == 3, [e["plain"] for e in announced]
    assert len(alice.find("request", primary__contains="new key")) == 3

    # alice decides for the key in use now: the conversation works again.
    mark = alice.mark()
    alice.cmd(bob.bare, "/omemo trust %d" % bob_id)
    alice.wait_for("conv", flags="system", plain__contains="is now trusted", since=mark)
    both_ways(alice, current, "three key changes")
    assert_healthy(alice)
    figure(ctx, "3 identity changes under device %d, each announced (peer's send to notice: "
           "%s), no payload for them before the decision (%d payload-less key transports); %s"
           % (bob_id, ", ".join(timings), key_transports,
              memory_checked(alice, rss0, "three key changes")))


# ---- 7. carbons forged by a stranger -----------------------------------------------------------

def scenario_hostile_forged_omemo_carbons_from_stranger(ctx):
    """scenarios_interop.py's forged_carbon_dropped has a contact forge
    carbons with plain bodies. Here a stranger wraps a contact's real OMEMO
    message: refused and logged, and the message's keys stay unspent."""
    alice, bob, alice_id, bob_id = start_alice_with_peer_bob(ctx)
    mallory = ctx.peer("mallory", omemo=False)
    mallory.wait_ready()
    both_ways(alice, bob, "setting up")
    rss0 = rss_kib(alice)

    text = "bob's real words, wrapped by mallory"
    genuine = capture(alice, bob, text)
    inner = re.sub(r"^<message ", "<message from='%s/peer' " % bob.bare, genuine)
    inner = re.sub(r"\sxml:lang=(['\"])[^'\"]*\1", "", inner)
    forgeries = {
        "received": inner,
        # as if alice's other device had written it to mallory
        "sent": re.sub(r"^<message from='[^']*'", "<message from='%s/laptop'" % alice.bare,
                       inner).replace("to='%s" % alice.bare, "to='mallory@localhost", 1),
    }
    mark, log0 = alice.mark(), log_mark(alice)
    for kind, msg in forgeries.items():
        mallory.send_raw("<message from='%s' to='%s' type='chat' id='forged-%s'><%s xmlns="
                         "'urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>%s"
                         "</forwarded></%s></message>"
                         % (alice.bare, alice.bare, kind, kind, msg, kind))
    for kind in forgeries:
        arrived = alice.wait_xml_in(lambda el, k=kind: el.tag == "message"
                                    and el.get("id") == "forged-" + k, since=mark)
        el = parse_xml(arrived["xml"])
        assert el.get("from").startswith("mallory@localhost/"), arrived
    dropped = wait_log(alice, "dropped a carbon from mallory@localhost/", log0, count=2)

    # Nothing shown, asked or sent; then the real message still decrypts.
    alice.sync()
    assert not alice.find("conv", since=mark), alice.find("conv", since=mark)
    assert not alice.find("request", since=mark)
    assert not messages_out(alice, bob.bare, mark)
    genuine_shows_once(alice, bob, genuine, text)

    both_ways(alice, bob, "the forged carbons")
    assert_healthy(alice)
    figure(ctx, "2 forged carbons from a stranger dropped (%s); %s"
           % (dropped[0].split(": ", 1)[-1], memory_checked(alice, rss0, "forged carbons")))


# ---- 8. our own device list, from a stranger -----------------------------------------------------

def scenario_hostile_foreign_event_for_own_device_list(ctx):
    alice, bob, alice_id, bob_id = start_alice_with_peer_bob(ctx)
    mallory = ctx.peer("mallory", omemo=False)
    mallory.wait_ready()
    alice_to_peer(alice, bob, "before the forged lists", devices={bob_id})
    rss0 = rss_kib(alice)

    # Device list events for "our own" list: claiming to come from alice's
    # own account (the server stamps mallory's address over it), without
    # alice's device, listing devices that do not exist.
    fake = [111111, 222222]
    event = ("<message from='%s' to='%s' type='headline' id='%s'><event xmlns='%s#event'>"
             "<items node='%s'><item id='current'><list xmlns='%s'>%s</list></item></items>"
             "</event></message>")
    devices = "".join("<device id='%d'/>" % i for i in fake)
    mark, log0 = alice.mark(), log_mark(alice)
    for n, to in enumerate((alice.bare, alice.jid)):
        mallory.send_raw(event % (alice.bare, to, "own-list-%d" % n, NS_PUBSUB,
                                  NODE_DEVICELIST, NS, devices))
    for n in range(2):
        arrived = alice.wait_xml_in(lambda el, i="own-list-%d" % n: el.tag == "message"
                                    and el.get("id") == i, since=mark)
        assert parse_xml(arrived["xml"]).get("from").startswith("mallory@localhost/"), arrived
    # Our own list is as it was: no publish of it, and the next message
    # goes to bob's device alone (no key, no bundle request for the fakes).
    alice_to_peer(alice, bob, "after the forged lists", devices={bob_id})
    assert not alice.xml_out(lambda el: el.tag == "iq" and any(
        p.get("node") == NODE_DEVICELIST for p in el.iter("publish")), since=mark), \
        "alice republished her own list"
    assert not alice.xml_out(lambda el: el.tag == "iq" and any(
        (i.get("node") or "").endswith((":111111", ":222222")) for i in el.iter("items")),
        since=mark)
    # What the server holds for alice is unchanged.
    m = mallory.mark()
    mallory.send_raw("<iq type='get' to='%s' id='own-list'><pubsub xmlns='%s'><items node='%s'/>"
                     "</pubsub></iq>" % (alice.bare, NS_PUBSUB, NODE_DEVICELIST))
    res = mallory.wait_for("iq-result", id="own-list", since=m)
    held = {int(d.get("id")) for d in parse_xml(res["raw"]).iter("device")}
    assert held == {alice_id}, held
    assert not alice.find("conv", since=mark, flags="system", plain__contains="111111")
    peer_to_alice(bob, alice, "bob after the forged lists")
    assert_healthy(alice)
    memory = memory_checked(alice, rss0, "forged own lists")

    # And the refusal was logged, naming the sender: a stranger trying to
    # rewrite our device list is worth a line in the debug log.
    lines = plugin_lines(alice, log0)
    refused = [line for line in lines if "mallory@localhost" in line
               and ("device list" in line.lower() or "pep" in line.lower())]
    assert len(refused) >= 2, (
        "the plugin ignored both forged device list events without a word in its debug log "
        "(handle_pep_event() in src/manager.c returns silently for a sender with a resource); "
        "its lines since: %s" % lines)
    figure(ctx, "2 forged own-list events from a stranger refused (%s); %s"
           % (refused[0].split(": ", 1)[-1], memory))
