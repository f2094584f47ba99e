"""What the plugin does when things break under it: its own database damaged,
locked by another program, read-only or on a full disk; the client killed
while it sends; the server gone while messages wait. In every case nothing
leaves in plaintext, the user is told in words, the database stays sound,
and once the fault is gone the conversation goes on.

Some scenarios mount file systems (a tmpfs, a read-only bind mount), so they
need root; each one unmounts what it mounted, also when it fails."""

import base64
import bisect
import contextlib
import os
import random
import re
import shutil
import sqlite3
import subprocess
import time

from harness import OMEMO_PLUGIN, parse_xml, protobuf_fields, server_start, server_stop
from scenarios_interop import (FAILURE_NOTICES, NODE_BUNDLES, NODE_DEVICELIST, NS,
                               assert_peer_clean, start_pair, wait_published)

NOT_SENT = "NOT sent"  # what the plugin's refusals say (src/manager.c)


def scenario_corrupt_database_refused_and_nothing_leaks(ctx):
    bob = ctx.client("bob")
    alice = ctx.client("alice", plugins=[OMEMO_PLUGIN], start=False)
    db_dir = os.path.join(alice.state_dir, "omemo")
    os.makedirs(db_dir, exist_ok=True)
    db = os.path.join(db_dir, alice.bare + ".db")
    garbage = bytes((i * 37 + 11) % 256 for i in range(8192))
    with open(db, "wb") as f:
        f.write(garbage)
    alice.start()
    alice.wait_signed_on()
    bob.wait_signed_on()

    # A clear message, and the file untouched.
    note = alice.wait_for("request", primary__contains="OMEMO is unavailable")
    assert "damaged" in note["primary"] or "not a database" in note["primary"], note
    with open(db, "rb") as f:
        assert f.read() == garbage, "the damaged database was changed"

    # Whether a conversation must be encrypted is unknown: nothing is sent,
    # the user is told and the text is kept.
    since = alice.mark()
    alice.send(bob.bare, "held back text")
    notice = alice.wait_for("conv", flags="system", plain__contains="NOT sent", since=since)
    assert "held back text" in notice["plain"], notice
    alice.sync()
    assert not alice.xml_out("held back text", since=since)
    assert not bob.find("conv", plain="held back text")
    mark = alice.mark()
    alice.cmd(bob.bare, "omemo status")
    alice.wait_for("conv", flags="system", plain__contains="not available", since=mark)


# ---- 1. killed while sending ---------------------------------------------------

CRASH_SEED = 20240606
CRASH_MESSAGES = 200


def _payload_to(el, to_bare):
    """True for an OMEMO message with a payload (not a key transport)."""
    return (el is not None and el.tag == "message"
            and (el.get("to") or "").split("/")[0] == to_bare
            and any(c.tag == "encrypted" and c.get("_ns") == NS
                    and c.find("payload") is not None for c in el))


def _payloads_out(client, to_bare, since):
    """(event, element) of every OMEMO message with a payload to to_bare."""
    found = []
    for e in client.find("xml-out", since=since):
        if "<message" in e["xml"]:
            el = parse_xml(e["xml"])
            if _payload_to(el, to_bare):
                found.append((e, el))
    return found


def _encrypted_out(client, to_bare, since):
    """(event, element) of every OMEMO message to to_bare, key transports
    included (they take a message key from the chain too)."""
    found = []
    for e in client.find("xml-out", since=since):
        if "<message" in e["xml"]:
            el = parse_xml(e["xml"])
            if (el is not None and el.tag == "message"
                    and (el.get("to") or "").split("/")[0] == to_bare
                    and any(c.tag == "encrypted" and c.get("_ns") == NS for c in el)):
                found.append((e, el))
    return found


def _wait_payloads_out(client, to_bare, count, since, timeout=20):
    """Until the client wrote `count` OMEMO messages to to_bare after since."""
    seen = []

    def enough(e):
        if e.get("event") == "xml-out" and "<message" in e["xml"] \
                and _payload_to(parse_xml(e["xml"]), to_bare):
            seen.append(e)
        return len(seen) >= count
    client.wait_for(enough, since=since, timeout=timeout)


def _chain_position(key_b64, prekey):
    """(ratchet key, counter, previous counter) of a serialized legacy
    Signal message: a WhisperMessage is a version byte, the protobuf
    (ratchetKey 1, counter 2, previousCounter 3, ciphertext 4) and an
    8-byte MAC; a PreKeyWhisperMessage (version byte, protobuf) carries one
    as its field 4."""
    data = base64.b64decode(key_b64)
    assert data and data[0] == 0x33, data[:4]
    if prekey:
        data = bytes(protobuf_fields(data[1:])[4][0])
        assert data and data[0] == 0x33, data[:4]
    f = protobuf_fields(data[1:-8])
    return bytes(f[1][0]), f.get(2, [0])[0], f.get(3, [0])[0]


def _unwritten_message_keys(sent):
    """Message keys the sender took from its chains but never put on the
    wire, from (ratchet key, counter, previous counter, process) of every
    message it wrote, in order. A chain's length shows in its highest
    counter and in the previous counter of the chain after it (libsignal
    puts the last counter used there). Returns ({process: keys missing
    between its last message and the next process's first}, chains)."""
    chains = []         # [ratchet key, set of counters, previous counter]
    order = []          # (chain index, counter, process) as written
    for rk, counter, prev, proc in sent:
        if not chains or chains[-1][0] != rk:
            assert rk not in [c[0] for c in chains], "a sending chain came back"
            chains.append([rk, set(), prev])
        assert counter not in chains[-1][1], "a message key was used twice"
        chains[-1][1].add(counter)
        order.append((len(chains) - 1, counter, proc))
    assert order == sorted(order), "message keys used out of order"
    gaps = {}
    for i, (_, used, _) in enumerate(chains):
        top = max(used)
        if i + 1 < len(chains):
            assert chains[i + 1][2] >= top, "previous counter %d below %d" % (
                chains[i + 1][2], top)
            top = chains[i + 1][2]
        for n in range(top + 1):
            if n in used:
                continue
            # A key taken but not sent: only a kill explains it, so the
            # message written before it came from one process and the one
            # written after it from the next.
            pos = bisect.bisect_left(order, (i, n, -1))
            assert 0 < pos < len(order), (i, n)
            before, after = order[pos - 1][2], order[pos][2]
            assert after == before + 1, \
                "message key %d of chain %d unused within process %d" % (n, i, before)
            gaps[before] = gaps.get(before, 0) + 1
    return gaps, len(chains)


def _server_received_ids(server, sender_to):
    """Ids of the <message> stanzas the server read from a client, to
    sender_to (from its debug log)."""
    ids = set()
    with open(server.log_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if "Received[c2s]: <message" in line and ("to='%s'" % sender_to) in line:
                m = re.search(r"\bid='([^']*)'", line)
                if m:
                    ids.add(m.group(1))
    return ids


def scenario_killed_mid_send_loses_at_most_the_message_in_flight(ctx):
    rng = random.Random(CRASH_SEED)
    alice, alice_dev, bob, bob_dev = start_pair(ctx)
    texts = ["crash run message %03d" % i for i in range(CRASH_MESSAGES)]
    started = time.monotonic()

    written = []        # (text, stanza id, incarnation) in the order written
    killed = []         # per kill: texts given, and how many were written
    replies = []        # what bob wrote to alice, in order
    kills = rng.randint(12, 16)
    nxt = 0
    rnd = 0
    incarnation = 0
    starts = [alice.base]   # the first event of each process
    while nxt < len(texts):
        rnd += 1
        # The conversation goes on both ways: alice's first message of the
        # round reaches bob (the very first starts the session: alice's
        # side starts it, bob only ever answers), then bob's reaches alice.
        a, b = alice.mark(), bob.mark()
        alice.send(bob.bare, texts[nxt])
        bob.wait_for("message", text=texts[nxt], since=b, timeout=20)
        alice.wait_for("conv", flags="send", plain=texts[nxt], since=a)
        out = _payloads_out(alice, bob.bare, a)
        assert len(out) == 1, [e["xml"] for e, _ in out]
        written.append((texts[nxt], out[0][1].get("id"), incarnation))
        nxt += 1
        reply = "bob says round %02d" % rnd
        replies.append(reply)
        bob.send(alice.bare, reply)
        alice.wait_for("conv", flags="recv", plain=reply, since=a, timeout=20)
        if nxt >= len(texts):
            break

        kill = len(killed) < kills
        burst = texts[nxt:nxt + (rng.randint(8, 16) if kill else 40)]
        since = alice.mark()
        for text in burst:
            alice.send(bob.bare, text)
        # Something for alice while she is busy: it arrives before or
        # after the kill, or is in flight at that moment.
        during = "bob writes during round %02d" % rnd
        replies.append(during)
        bob.send(alice.bare, during)
        if kill and len(burst) > 1:
            _wait_payloads_out(alice, bob.bare, rng.randint(1, len(burst) - 1), since)
            time.sleep(rng.uniform(0, 0.003))
            alice.kill()
        else:
            kill = False
            alice.wait_for("conv", flags="send", plain=burst[-1], since=since, timeout=20)
        out = _payloads_out(alice, bob.bare, since)
        shown = [e["plain"] for e in alice.find("conv", flags="send", since=since)]
        assert shown == burst[:len(shown)] and len(shown) <= len(out), (shown, len(out))
        # Sends are handled in order: the n-th message out is the n-th text.
        written += [(t, el.get("id"), incarnation) for t, (_, el) in zip(burst, out)]
        nxt += len(out)
        if not kill:
            continue
        # What never reached the socket was never sent: typed again after
        # the restart, as a user would.
        killed.append({"given": len(burst), "written": len(out)})
        alice.restart()
        incarnation += 1
        starts.append(alice.base)
        alice.wait_signed_on(timeout=20)
        # The same device: no new identity, its id still in the list.
        assert wait_published(alice, devicelist=False) == alice_dev

    bob.wait_for("message", text=texts[-1], timeout=20)
    alice.wait_for("conv", flags="recv", plain=replies[-1], timeout=20)
    elapsed = time.monotonic() - started
    assert len(killed) == kills, "%d kills, %d planned" % (len(killed), kills)
    assert [t for t, _, _ in written] == texts, "a text was not written exactly once"

    # The plugin's part: every message key it took from the chain went
    # out, except at most the message being sent when it was killed; none
    # was used twice (that would mean state lost on a crash).
    def incarnation_of(event):
        return bisect.bisect_right(starts, event["_seq"]) - 1

    sent = []
    for e, el in _encrypted_out(alice, bob.bare, 0):
        keys = [k for k in el.iter("key") if k.get("rid") == str(bob_dev)]
        assert len(keys) == 1, e["xml"]
        sent.append(_chain_position(keys[0].text.strip(), keys[0].get("prekey") == "true")
                    + (incarnation_of(e),))
    gaps, chains = _unwritten_message_keys(sent)
    assert all(n <= 1 for n in gaps.values()), "keys used but not sent per kill: %s" % gaps
    unwritten = sum(gaps.values())

    # The connection's part: what the server read reached bob, decrypted,
    # once each, in order. What it never read was written into a socket
    # that the kill tore down (the kernel drops unsent data when a process
    # dies with unread input); that is only ever the tail of a killed
    # process's messages.
    got = [e for e in bob.find("message", since=0) if e.get("from") == alice.bare]
    got_texts = [e["text"] for e in got]
    assert all(e["encrypted"] and e["sender_device"] == alice_dev for e in got), got
    assert len(got_texts) == len(set(got_texts)), "bob got a message twice"
    received = _server_received_ids(ctx.server, bob.bare)
    reached = [t for t, i, _ in written if i in received]
    assert got_texts == reached, (
        "what the server read is not what bob decrypted",
        [t for t in reached if t not in got_texts], [t for t in got_texts if t not in reached])
    torn = []
    for inc in range(incarnation + 1):
        mine = [(t, i in received) for t, i, n in written if n == inc]
        first_lost = next((k for k, (_, ok) in enumerate(mine) if not ok), len(mine))
        assert all(not ok for _, ok in mine[first_lost:]), (
            "a message in the middle of process %d was lost" % inc, mine)
        torn.append(len(mine) - first_lost)
    assert torn[-1] == 0, "the last process lost messages: %s" % torn

    # bob's side never broke: no decrypt error, and he never had to start
    # a session with alice (he only answers hers).
    assert_peer_clean(bob)
    assert not [e for e in bob.find("sent", since=0) if e.get("prekey_devices")], \
        bob.find("sent", since=0)
    bob_prekey = sum(1 for e in got if e["prekey"])
    assert not [x for x in alice.xml_in("<message", since=0) if "prekey=" in x], \
        "bob started a new session"

    # alice's side: bob's messages shown once each, nothing undecryptable,
    # no plaintext ever on the wire.
    shown_in = [e["plain"] for e in alice.find("conv", flags="recv", since=0)]
    assert set(shown_in) <= set(replies) and len(shown_in) == len(set(shown_in)), shown_in
    missed = [r for r in replies if r not in shown_in]
    assert len(missed) <= len(killed), missed
    bad = [e for e in alice.find("conv", flags="system", since=0)
           if any(n in (e.get("plain") or "") for n in FAILURE_NOTICES)]
    assert not bad, bad
    assert not alice.find("glib-log", level="critical", since=0)
    wire = "\n".join(e["xml"] for e in alice.find("xml-out", since=0))
    for text in texts + replies:
        assert text not in wire, "plaintext on the wire: " + text

    mid = sum(1 for k in killed if k["written"] < k["given"])
    print("    killed mid-send: %d messages, %d kills (%d with messages still queued), "
          "%d message keys used but never sent, %d sending chains, %d messages torn "
          "down with the connection %s, %d of bob's %d not seen by alice, "
          "%d prekey messages at bob, %.1f s"
          % (len(texts), len(killed), mid, unwritten, chains, sum(torn),
             [n for n in torn if n], len(missed), len(replies), bob_prekey, elapsed),
          flush=True)


# ---- 2. the server goes away while messages wait ------------------------------

def _not_sent_notices(client, text, since=None):
    """The plugin's notices that text was not sent (they quote it)."""
    return [e for e in client.find("conv", flags="system", since=since)
            if NOT_SENT in (e.get("plain") or "") and text in (e.get("plain") or "")]


def _assert_never_out(client, texts):
    """Not one byte any process of client wrote holds one of texts."""
    wire = "\n".join(e["xml"] for e in client.find("xml-out", since=0))
    for text in texts:
        assert text not in wire, "%s: the plaintext %r went on the wire" % (client.name, text)


def scenario_server_gone_while_messages_wait_for_bundles(ctx):
    alice, alice_dev, bob, bob_dev = start_pair(ctx)
    bundle_node = NODE_BUNDLES + str(bob_dev)
    alice.drop_in(bundle_node)

    # alice has no session with bob yet: her messages wait for his device
    # list (answered) and then his bundle (answered, but withheld).
    queued = ["queued while the server goes, one", "queued while the server goes, two",
              "queued while the server goes, three"]
    since = alice.mark()
    for text in queued:
        alice.send(bob.bare, text)
    asked = alice.wait_xml_out(lambda el: el.tag == "iq" and any(
        i.get("node") == bundle_node for i in el.iter("items")), since=since)
    alice.wait_for("dropped", xml__contains=bundle_node, since=since)
    listed = alice.find("xml-in", since=since, xml__contains=NODE_DEVICELIST)
    assert listed and listed[0]["_seq"] < asked["_seq"], "no device list answer before"
    alice.sync()
    assert not alice.find("conv", since=since), alice.find("conv", since=since)

    # The server stops: the stream ends under alice and bob.
    bob.expected_exit = True
    server_stop(ctx.server)
    alice.wait_for(lambda e: e.get("event") in ("connection-error", "signed-off"),
                   since=since, timeout=20)
    bob.wait_gone(timeout=20)
    for text in queued:
        notice = alice.wait_for(
            "conv", flags="system", since=since, conv=lambda c: (c or "").startswith(bob.bare),
            plain=lambda p, t=text: p is not None and NOT_SENT in p and t in p)
        assert "offline" in notice["plain"], notice
        assert len(_not_sent_notices(alice, text, since)) == 1, _not_sent_notices(alice, text)
    assert not alice.find("conv", flags="send", since=since)
    assert not bob.find("message", since=0, text=lambda t: t in queued)
    assert not alice.find("glib-log", level="critical")

    # The server comes back; the client starts again on the same state
    # (the headless client does not reconnect on its own), bob too.
    server_start(ctx.server)
    bob.restart()
    assert bob.wait_ready()["device_id"] == bob_dev
    alice.restart()
    alice.wait_signed_on(timeout=20)
    assert wait_published(alice, devicelist=False) == alice_dev
    text = "after the server came back"
    a, b = alice.mark(), bob.mark()
    alice.send(bob.bare, text)
    got = bob.wait_for("message", text=text, since=b, timeout=20)
    assert got["encrypted"] and got["sender_device"] == alice_dev and got["prekey"], got
    alice.wait_for("conv", flags="send", plain=text, since=a)
    out = [el for _, el in _encrypted_out(alice, bob.bare, a) if _payload_to(el, bob.bare)]
    assert len(out) == 1, out
    assert [k.get("rid") for k in out[0].iter("key")] == [str(bob_dev)]

    # Nothing queued before went later, nothing ever in plaintext.
    bob.sync()
    assert not [e for e in bob.find("message", since=0) if e["text"] in queued]
    _assert_never_out(alice, queued + [text])
    assert_peer_clean(bob)
    assert not alice.find("glib-log", level="critical", since=0)


# ---- shared: a database and a running conversation ----------------------------

def _db_path(client):
    return os.path.join(client.state_dir, "omemo", client.bare + ".db")


def _integrity(path):
    """PRAGMA integrity_check of the database, read by another connection."""
    conn = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=10)
    try:
        return [r[0] for r in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()


def _talk(alice, bob, text_out, text_in):
    """One message each way, both decrypted; alice's went out encrypted."""
    a, b = alice.mark(), bob.mark()
    alice.send(bob.bare, text_out)
    got = bob.wait_for("message", text=text_out, since=b, timeout=20)
    assert got["encrypted"] is True, got
    alice.wait_for("conv", flags="send", plain=text_out, since=a)
    b = bob.mark()
    bob.send(alice.bare, text_in)
    bob.wait_for("sent", to=alice.bare, since=b)
    alice.wait_for("conv", flags="recv", plain=text_in, since=a, timeout=20)


def _refused(alice, bob, text, words, timeout=20):
    """alice types text; it is not sent: the notice quotes it and says
    `words`, nothing of it leaves, bob gets nothing. Returns the notice."""
    a, b = alice.mark(), bob.mark()
    started = time.monotonic()
    alice.send(bob.bare, text)
    notice = alice.wait_for(
        "conv", flags="system", since=a, timeout=timeout,
        plain=lambda p: p is not None and NOT_SENT in p and text in p)
    took = time.monotonic() - started
    # The reason, not the quoted text, must say it.
    reason = notice["plain"].split(' It was: "')[0]
    assert words in reason, notice["plain"]
    alice.sync()
    assert not alice.find("conv", flags="send", since=a), alice.find("conv", since=a)
    assert not [e for e in alice.find("xml-out", since=a) if text in e["xml"]]
    assert not [el for _, el in _encrypted_out(alice, bob.bare, a) if _payload_to(el, bob.bare)], \
        "a message went to bob"
    bob.sync()
    assert not bob.find("message", since=b), bob.find("message", since=b)
    return notice, took


def _not_shown(alice, bob, text, words):
    """bob sends text; alice cannot store it, so it is not shown, and her
    conversation says it could not be decrypted, with `words` as why."""
    a = alice.mark()
    bob.send(alice.bare, text)
    warn = alice.wait_for("conv", flags="system", since=a, timeout=20,
                          plain__contains="could not be decrypted")
    assert words in warn["plain"], warn
    alice.sync()
    assert not alice.find("conv", flags="recv", since=a)


# ---- 3. the database locked by another program --------------------------------

def scenario_database_locked_by_another_program(ctx):
    alice, alice_dev, bob, bob_dev = start_pair(ctx)
    _talk(alice, bob, "before the lock, alice", "before the lock, bob")
    db = _db_path(alice)

    # Another program holds the write lock (WAL: readers still read).
    other = sqlite3.connect(db, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        notice, took = _refused(alice, bob, "typed while the database is locked", "locked")
        assert "locked by another program" in notice["plain"], notice

        # bob's message meanwhile cannot be stored, so it is not shown;
        # the conversation says why.
        _not_shown(alice, bob, "bob writes while it is locked", "locked by another program")
    finally:
        if other.in_transaction:
            other.rollback()
        other.close()

    assert _integrity(db) == ["ok"], _integrity(db)
    _talk(alice, bob, "after the lock, alice", "after the lock, bob")
    assert_peer_clean(bob)
    assert not alice.find("glib-log", level="critical")
    _assert_never_out(alice, ["typed while the database is locked"])
    print("    database locked: refused after %.1f s: %s" % (took, notice["plain"]), flush=True)


# ---- mounts --------------------------------------------------------------------

def _unmount(target):
    """Unmounts target; lazily if something still holds it, so a failing
    scenario never leaves a mount behind."""
    if subprocess.run(["umount", target], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", target], capture_output=True, check=True)


@contextlib.contextmanager
def _read_only(folder):
    """folder read-only for files opened from now on: a read-only bind
    mount of itself (root ignores file modes)."""
    subprocess.run(["mount", "--bind", folder, folder], check=True, capture_output=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", folder, folder], check=True,
                       capture_output=True)
        yield
    finally:
        _unmount(folder)


@contextlib.contextmanager
def _tmpfs(folder, size):
    """A tmpfs of `size` (e.g. "4m") mounted on folder, for a full disk.
    When the scenario fails, the databases on it are copied beside it
    (folder + "-kept") before it goes."""
    os.makedirs(folder, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % size, "tmpfs", folder],
                   check=True, capture_output=True)
    try:
        yield
    except BaseException:
        kept = folder + "-kept"
        os.makedirs(kept, exist_ok=True)
        for name in os.listdir(folder):
            if ".db" in name:
                shutil.copy2(os.path.join(folder, name), kept)
        raise
    finally:
        _unmount(folder)


def _stop(client):
    """Quits client if it runs (before unmounting what it has open)."""
    if client.alive():
        client.quit()


# ---- 4. the database read-only -------------------------------------------------

def scenario_database_read_only(ctx):
    alice, alice_dev, bob, bob_dev = start_pair(ctx)
    _talk(alice, bob, "before read-only, alice", "before read-only, bob")
    db = _db_path(alice)
    folder = os.path.dirname(db)
    assert alice.quit() == 0
    with open(db, "rb") as f:
        before = f.read()

    text = "typed while the database is read-only"
    try:
        with _read_only(folder):
            with open(db, "rb") as f:
                assert f.read() == before
            alice.restart()
            alice.wait_signed_on(timeout=20)
            # The account's OMEMO is refused, in words that say why.
            note = alice.wait_for("request", primary__contains="OMEMO is unavailable",
                                  timeout=20)
            assert "read-only" in note["primary"], note["primary"]
            _refused(alice, bob, text, "read-only")
            _stop(alice)
            with open(db, "rb") as f:
                assert f.read() == before, "the read-only database changed"
    finally:
        _stop(alice)

    assert _integrity(db) == ["ok"], _integrity(db)
    alice.restart()
    alice.wait_signed_on(timeout=20)
    assert wait_published(alice, devicelist=False) == alice_dev
    _talk(alice, bob, "writable again, alice", "writable again, bob")
    assert_peer_clean(bob)
    _assert_never_out(alice, [text])


# ---- 5. the disk full ----------------------------------------------------------

def _fill(folder, name="filler"):
    """Writes a file into folder until the file system is full; returns
    its path."""
    path = os.path.join(folder, name)
    chunk = b"\0" * 65536
    with open(path, "wb", buffering=0) as f:
        while chunk:
            try:
                f.write(chunk)
            except OSError:
                chunk = chunk[:len(chunk) // 2]
    return path


def _key_positions(client, to_bare, device):
    """(ratchet key, counter) of every message key client wrote for device."""
    found = []
    for _, el in _encrypted_out(client, to_bare, 0):
        for k in el.iter("key"):
            if k.get("rid") == str(device):
                found.append(_chain_position(k.text.strip(), k.get("prekey") == "true")[:2])
    return found


def scenario_disk_full(ctx):
    alice = ctx.client("alice", plugins=[OMEMO_PLUGIN], start=False)
    bob = ctx.peer("bob")
    folder = os.path.join(alice.state_dir, "omemo")
    db = os.path.join(folder, alice.bare + ".db")
    text = "typed while the disk is full"
    try:
        with _tmpfs(folder, "4m"):
            alice.start()
            alice.wait_signed_on()
            alice_dev = wait_published(alice)
            bob_dev = bob.wait_ready()["device_id"]
            _talk(alice, bob, "before the disk fills, alice", "before the disk fills, bob")

            filler = _fill(folder)
            # The next message's keys were made safe by the commit of the
            # one before (the records read back step past them), so it
            # leaves before its own commit; that commit fails, and alice
            # is told. It went out encrypted, and bob reads it.
            early = "sent as the disk fills"
            a, b = alice.mark(), bob.mark()
            alice.send(bob.bare, early)
            got = bob.wait_for("message", text=early, since=b, timeout=20)
            assert got["encrypted"] is True, got
            warn = alice.wait_for("conv", flags="system", since=a, timeout=20,
                                  plain__contains="could not save its state")
            assert "disk holding the OMEMO database is full" in warn["plain"], warn
            # The one after needs a commit before it leaves: refused.
            notice, _ = _refused(alice, bob, text, "full")
            assert "disk holding the OMEMO database is full" in notice["plain"], notice
            _not_shown(alice, bob, "bob writes while the disk is full", "full")

            os.unlink(filler)
            assert _integrity(db) == ["ok"], _integrity(db)
            _talk(alice, bob, "space again, alice", "space again, bob")
            # What the failed writes left in memory matches the disk: a
            # new process goes on from there, and no message key is
            # used twice.
            alice.kill()
            alice.restart()
            alice.wait_signed_on(timeout=20)
            assert wait_published(alice, devicelist=False) == alice_dev
            _talk(alice, bob, "after a restart, alice", "after a restart, bob")
            used = _key_positions(alice, bob.bare, bob_dev)
            assert len(used) == len(set(used)), "a message key was used twice"
            _stop(alice)
            assert _integrity(db) == ["ok"], _integrity(db)
    finally:
        _stop(alice)
    assert_peer_clean(bob)
    assert not alice.find("glib-log", level="critical", since=0)
    _assert_never_out(alice, [text])


# ---- 6. a damaged database -----------------------------------------------------

def _damaged_database_refused(ctx, damage):
    """alice's database, complete after a conversation, is damaged while
    she is away; she comes back: her OMEMO is refused with a clear
    message, the file stays as it is, nothing goes out in plaintext."""
    alice, alice_dev, bob, bob_dev = start_pair(ctx)
    _talk(alice, bob, "before the damage, alice", "before the damage, bob")
    assert alice.quit() == 0
    db = _db_path(alice)
    assert not os.path.exists(db + "-wal"), "the database was not checkpointed on quit"
    with open(db, "rb") as f:
        sound = f.read()
    damaged = damage(db, sound)
    with open(db, "wb") as f:
        f.write(damaged)

    alice.restart()
    alice.wait_signed_on(timeout=20)
    note = alice.wait_for("request", primary__contains="OMEMO is unavailable", timeout=20)
    assert "damaged" in note["primary"], note["primary"]
    text = "typed with a damaged database"
    _refused(alice, bob, text, "damaged")
    mark = alice.mark()
    alice.cmd(bob.bare, "omemo status")
    alice.wait_for("conv", flags="system", plain__contains="not available", since=mark)
    assert not [e for e in alice.find("xml-out") if "<publish" in e["xml"]], \
        "published keys from a damaged database"
    _stop(alice)
    with open(db, "rb") as f:
        assert f.read() == damaged, "the damaged database was changed"
    assert_peer_clean(bob)
    _assert_never_out(alice, [text])


def scenario_truncated_database_refused(ctx):
    def truncate(db, sound):
        return sound[:len(sound) // 2]
    _damaged_database_refused(ctx, truncate)


def scenario_database_with_random_bytes_refused(ctx):
    rng = random.Random(CRASH_SEED + 6)

    def scribble(db, sound):
        # Random bytes over the start of a b-tree page in the middle of
        # the file, where SQLite's own checks must see them (bytes in a
        # page's unused space would be harmless, and invisible). The
        # pages are looked up in a copy, so the original stays as it is.
        copy = db + ".probe"
        with open(copy, "wb") as f:
            f.write(sound)
        conn = sqlite3.connect(copy)
        try:
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            pages = [r[0] for r in conn.execute(
                "SELECT pageno FROM dbstat WHERE pagetype IN ('leaf', 'internal') "
                "AND pageno > 1 ORDER BY pageno")]
        finally:
            conn.close()
        for name in os.listdir(os.path.dirname(db)):
            if name.startswith(os.path.basename(copy)):
                os.unlink(os.path.join(os.path.dirname(db), name))
        page = pages[len(pages) // 2]
        start = (page - 1) * page_size
        junk = bytes(rng.randrange(256) for _ in range(512))
        return sound[:start] + junk + sound[start + len(junk):]
    _damaged_database_refused(ctx, scribble)
