#!/usr/bin/python3
"""Self-test of the group-chat (XEP-0045) side of test/e2e/peer.py.

One throwaway Prosody, four peers: alice creates r1@conference.localhost,
makes it non-anonymous and members-only, makes bob, carol and later dave
(a client without OMEMO) members; everyone writes OMEMO group messages and
the others must read them with the right sender. Also checked: our own
reflected message, a member who left is still encrypted for but receives
nothing, a recipient without OMEMO is named in the errors and does not stop
the others, the status codes of a configuration change, history on join, and
a sender whose real JID a member cannot see.

    /usr/bin/python3 test/e2e/peer_muc_selftest.py [-v] [--keep]

Prints PASS/FAIL per check (INFO lines for observations) and a summary;
exit status 1 on failure.
"""

import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from prosody import Prosody  # noqa: E402
from peer_selftest import KEEP, PeerProc, Results, brief  # noqa: E402

ROOM = "r1@conference.localhost"
JIDS = {n: f"{n}@localhost" for n in ("alice", "bob", "carol", "dave")}
NICKS = {"alice": "Alice", "bob": "Bob", "carol": "Carol", "dave": "Dave"}


def info(text):
    print(f"INFO {text}", flush=True)


def run(r, server, work):
    accounts = {u: server.register(u) for u in JIDS}
    peers = {}

    def start(name, *extra):
        p = PeerProc(name, accounts[name], os.path.join(work, name), work, *extra).start()
        peers[name] = p
        return p

    def groupmessage(p, **want):
        return p.expect(dict({"event": "groupmessage", "room": ROOM}, **want))

    def join(name):
        p = peers[name]
        p.cmd(f"join {ROOM} {NICKS[name]}")
        return p.expect(lambda e: e["event"] == "joined" or (e["event"] == "error" and "join" in e.get("command", "")))

    try:
        alice, bob, carol = start("alice"), start("bob"), start("carol")
        ready = [p.wait_ready() for p in (alice, bob, carol)]
        if not r.check("alice, bob and carol become ready", all(ready), [brief(x) for x in ready]):
            return
        dev = {n: p.ready["device_id"] for n, p in peers.items()}

        # -- alice creates and configures the room ------------------------------------
        j = join("alice")
        if not r.check("alice creates r1 (status 201, owner)", j and j["event"] == "joined" and j["created"] is True
                       and j["affiliation"] == "owner" and j["occupants"] == {"Alice": JIDS["alice"]}, brief(j)):
            return
        info(f"new locked room: self codes {j['codes']}, features {j['features']}")
        info(f"new locked room: roominfo {j['info']}")
        occ = alice.expect({"event": "occupant", "nick": "Alice", "self": True}, 1)
        r.check("alice's own presence is reported with self=true",
                occ and occ["jid"] == JIDS["alice"] and occ["available"] is True and occ["role"] == "moderator",
                brief(occ))
        # Another account cannot enter a locked room.
        bob.cmd(f"join {ROOM} Bob")
        err = bob.expect({"event": "error", "command": f"join {ROOM} Bob"})
        r.check("a locked room refuses others (item-not-found)", err and err.get("condition") == "item-not-found",
                brief(err))
        alice.cmd(f"configure {ROOM} muc#roomconfig_bogus=1")
        err = alice.expect({"event": "error", "command": f"configure {ROOM} muc#roomconfig_bogus=1"})
        r.check("configure refuses a field the form does not have", err and err.get("condition") == "unknown-field",
                brief(err))
        alice.cmd(f"configure {ROOM} muc#roomconfig_whois=anyone muc#roomconfig_membersonly=1")
        conf = alice.expect(lambda e: e["event"] in ("configured", "error"))
        r.check("configure non-anonymous + members-only",
                conf and conf["event"] == "configured" and "muc_nonanonymous" in conf["features"]
                and "muc_membersonly" in conf["features"], brief(conf))
        if conf and conf["event"] == "configured":
            info(f"non-anonymous members-only features: {conf['features']}")
        cc = alice.expect({"event": "room-config-changed"}, 3)
        info(f"alice's own configure: room-config-changed {cc and cc['codes']}")
        for name in ("bob", "carol"):
            alice.cmd(f"affiliate {ROOM} {JIDS[name]} member")
            a = alice.expect(lambda e: e["event"] in ("affiliated", "error"))
            r.check(f"alice makes {name} a member", a and a["event"] == "affiliated" and a["jid"] == JIDS[name]
                    and a["affiliation"] == "member", brief(a))

        # -- bob and carol join -------------------------------------------------------------
        jb = join("bob")
        r.check("bob joins and sees alice's real JID",
                jb and jb["event"] == "joined" and jb["created"] is False and jb["affiliation"] == "member"
                and jb["occupants"] == {"Alice": JIDS["alice"], "Bob": JIDS["bob"]}, brief(jb))
        if jb and jb["event"] == "joined":
            info(f"member joining a non-anonymous room: self codes {jb['codes']}")
        jc = join("carol")
        r.check("carol joins and sees everyone's real JID",
                jc and jc["event"] == "joined"
                and jc["occupants"] == {"Alice": JIDS["alice"], "Bob": JIDS["bob"], "Carol": JIDS["carol"]}, brief(jc))
        occ = alice.expect({"event": "occupant", "nick": "Carol", "available": True})
        r.check("alice gets an occupant event for carol",
                occ and occ["jid"] == JIDS["carol"] and occ["affiliation"] == "member"
                and occ["role"] == "participant" and occ["self"] is False, brief(occ))
        occ = bob.expect({"event": "occupant", "nick": "Carol", "available": True})
        r.check("bob gets an occupant event for carol with her real JID", occ and occ["jid"] == JIDS["carol"],
                brief(occ))

        # -- each one writes, the others read ------------------------------------------------
        everyone = ("alice", "bob", "carol")
        for sender in everyone:
            text = f"group hello from {sender}, with spaces"
            peers[sender].cmd(f"gsend {ROOM} {text}")
            sent = peers[sender].expect(lambda e: e["event"] in ("gsent", "error"))
            others = [n for n in everyone if n != sender]
            r.check(f"{sender}'s gsend encrypts for the two others",
                    sent and sent["event"] == "gsent" and sent["encrypted"] is True
                    and sent["recipients"] == sorted(JIDS[n] for n in others) and sent["errors"] == []
                    and sent["device_count"] == 2, brief(sent))
            for other in others:
                got = groupmessage(peers[other], nick=NICKS[sender])
                r.check(f"{other} decrypts {sender}'s group message",
                        got and got["text"] == text and got["encrypted"] is True and got["jid"] == JIDS[sender]
                        and got["own"] is False and got["delayed"] is False
                        and got["sender_device"] == dev[sender] and got["type"] == "groupchat"
                        and sent and got["id"] == sent.get("id"), brief(got))
                if got and sender == "alice":
                    r.check(f"{other}: the group message carries store hint, EME and a fallback body",
                            "urn:xmpp:hints" in got["raw"] and "urn:xmpp:eme:0" in got["raw"]
                            and "<body>" in got["raw"] and text not in got["raw"], got["raw"][:200])
            own = groupmessage(peers[sender], nick=NICKS[sender])
            r.check(f"{sender}'s own reflected message: own=true with the text",
                    own and own["own"] is True and own["text"] == text and own["encrypted"] is True
                    and own["jid"] == JIDS[sender] and sent and own["id"] == sent.get("id"), brief(own))
        kts = [e for e in alice.unconsumed("key-transport") if e.get("from") in (JIDS["bob"], JIDS["carol"])]
        info(f"key transports alice got after her first prekey group message: "
             f"{sorted((e['from'], e['sender_device']) for e in kts)}")

        # -- plain group message -------------------------------------------------------------
        bob.cmd(f"gsend-plain {ROOM} plain words in the room")
        sent = bob.expect({"event": "gsent"})
        got = groupmessage(alice, nick="Bob", encrypted=False)
        r.check("gsend-plain arrives unencrypted with the sender's JID",
                sent and sent["encrypted"] is False and got and got["text"] == "plain words in the room"
                and got["jid"] == JIDS["bob"], (brief(sent), brief(got)))
        own = groupmessage(bob, nick="Bob", encrypted=False)
        r.check("bob's plain reflection is own=true", own and own["own"] is True, brief(own))
        groupmessage(carol, nick="Bob", encrypted=False)

        # -- carol leaves: still a recipient, gets nothing --------------------------------------
        carol.cmd(f"leave {ROOM}")
        left = carol.expect(lambda e: e["event"] in ("left", "error"))
        r.check("carol leaves", left and left["event"] == "left", brief(left))
        gone = alice.expect({"event": "occupant", "nick": "Carol", "available": False})
        r.check("alice sees carol go", gone and gone["jid"] == JIDS["carol"], brief(gone))
        alice.cmd(f"gsend {ROOM} carol has left")
        sent = alice.expect(lambda e: e["event"] in ("gsent", "error"))
        r.check("alice still encrypts for carol (a member)",
                sent and sent["event"] == "gsent" and sent["recipients"] == [JIDS["bob"], JIDS["carol"]], brief(sent))
        got = groupmessage(bob, nick="Alice", text="carol has left")
        r.check("bob reads it", got and got["encrypted"] is True, brief(got))
        stray = groupmessage(carol, text="carol has left") or carol.expect({"event": "groupmessage"}, 2)
        r.check("carol, gone, receives nothing", stray is None, brief(stray))
        carol.cmd(f"gsend {ROOM} not in the room")
        err = carol.expect({"event": "error", "command": f"gsend {ROOM} not in the room"})
        r.check("gsend outside the room is refused locally", err is not None, carol.unconsumed("gsent"))
        carol.cmd(f"gsend-plain {ROOM} shouting from outside")
        ge = carol.expect({"event": "group-error"})
        r.check("a plain message from outside comes back as group-error", ge and ge["room"] == ROOM, brief(ge))
        if ge:
            info(f"Prosody's answer to a non-occupant's groupchat message: {ge['condition']}")

        # -- dave, without OMEMO ----------------------------------------------------------------
        dave = start("dave", "--no-omemo")
        if not r.check("dave (--no-omemo) becomes ready", dave.wait_ready(), dave.unconsumed("error")):
            return
        jd = join("dave")
        r.check("a non-member cannot join the members-only room",
                jd and jd["event"] == "error" and jd.get("condition") == "registration-required", brief(jd))
        alice.cmd(f"affiliate {ROOM} {JIDS['dave']} member")
        alice.expect({"event": "affiliated", "jid": JIDS["dave"]})
        jd = join("dave")
        r.check("dave joins once he is a member", jd and jd["event"] == "joined", brief(jd))
        hist = [e for e in dave.unconsumed("groupmessage") if e["delayed"]]
        r.check("dave gets the room history, marked delayed, undecryptable for him",
                len(hist) >= 4 and all(e["encrypted"] is False for e in hist)
                and any(e.get("omemo_element") for e in hist) and any(e["text"] == "plain words in the room"
                                                                       for e in hist),
                [brief(e) for e in hist])
        info(f"history sent to dave on join: {len(hist)} messages, "
             f"senders {[e['nick'] for e in hist]}, jids {sorted(set(str(e['jid']) for e in hist))}")
        alice.expect({"event": "occupant", "nick": "Dave", "available": True})
        alice.cmd(f"gsend {ROOM} dave cannot read this")
        sent = alice.expect(lambda e: e["event"] in ("gsent", "error"))
        r.check("alice's gsend names dave in errors and still reaches bob and carol",
                sent and sent["event"] == "gsent" and sent["recipients"] == [JIDS["bob"], JIDS["carol"]]
                and [e["jid"] for e in sent["errors"]] == [JIDS["dave"]], brief(sent))
        if sent and sent["event"] == "gsent":
            info(f"dave's error entry: {sent['errors']}")
        got = groupmessage(bob, nick="Alice", text="dave cannot read this")
        r.check("bob reads it", got and got["encrypted"] is True and got["jid"] == JIDS["alice"], brief(got))
        fb = groupmessage(dave, nick="Alice", delayed=False)
        r.check("dave sees only the fallback body",
                fb and fb["encrypted"] is False and fb.get("omemo_element") is True
                and "dave cannot read" not in fb["text"], brief(fb))
        dave.cmd(f"gsend {ROOM} no omemo here")
        err = dave.expect({"event": "error", "command": f"gsend {ROOM} no omemo here"})
        r.check("gsend without OMEMO is an error", err is not None, dave.unconsumed("gsent"))

        # -- a member's view: can bob fetch the member list? ---------------------------------------
        bob.cmd(f"gsend {ROOM} bob sends while whois=anyone")
        sent = bob.expect(lambda e: e["event"] in ("gsent", "error"))
        r.check("bob (member) reaches alice and carol, names dave",
                sent and sent["event"] == "gsent" and sent["recipients"] == [JIDS["alice"], JIDS["carol"]]
                and [e["jid"] for e in sent["errors"]] == [JIDS["dave"]], brief(sent))
        if sent and sent["event"] == "gsent":
            info(f"member list fetch by a member in a non-anonymous members-only room: refused "
                 f"{sent['refused_lists']}")
        groupmessage(alice, nick="Bob", text="bob sends while whois=anyone")

        # -- alice makes the room semi-anonymous ---------------------------------------------------
        alice.cmd(f"configure {ROOM} muc#roomconfig_whois=moderators")
        conf = alice.expect(lambda e: e["event"] in ("configured", "error"))
        r.check("configure whois=moderators", conf and conf["event"] == "configured"
                and "muc_semianonymous" in conf["features"] and "muc_nonanonymous" not in conf["features"],
                brief(conf))
        if conf and conf["event"] == "configured":
            info(f"semi-anonymous members-only features: {conf['features']}")
        cc = bob.expect({"event": "room-config-changed"})
        r.check("bob sees room-config-changed with 173", cc and 173 in cc["codes"], brief(cc))
        if cc:
            info(f"status codes for whois=moderators as seen by bob: {cc['codes']}")
        bob.cmd(f"gsend {ROOM} bob sends while whois=moderators")
        sent = bob.expect(lambda e: e["event"] in ("gsent", "error"))
        r.check("bob still reaches alice and carol from what he learnt before",
                sent and sent["event"] == "gsent" and sent["recipients"] == [JIDS["alice"], JIDS["carol"]], brief(sent))
        if sent and sent["event"] == "gsent":
            info(f"member list fetch by a member in a semi-anonymous room: refused {sent['refused_lists']}")
        groupmessage(alice, nick="Bob", text="bob sends while whois=moderators")

        # -- carol comes back into a room that hides JIDs from her ---------------------------------
        jc = join("carol")
        r.check("carol rejoins without seeing real JIDs",
                jc and jc["event"] == "joined" and jc["occupants"].get("Alice") is None
                and jc["occupants"].get("Bob") is None and jc["occupants"].get("Carol") == JIDS["carol"], brief(jc))
        hist = [e for e in carol.unconsumed("group-decrypt-error") if e["delayed"]]
        info(f"carol's history on rejoin: {len(hist)} undecryptable (unknown sender), "
             f"{len([e for e in carol.unconsumed('groupmessage') if e['delayed']])} other")
        occ = bob.expect({"event": "occupant", "nick": "Carol", "available": True})
        r.check("bob (participant) no longer sees carol's real JID", occ and occ["jid"] is None, brief(occ))
        bob.cmd(f"gsend {ROOM} who am I to carol")
        sent = bob.expect(lambda e: e["event"] in ("gsent", "error"))
        r.check("bob's gsend names the anonymous nick and still uses the member list he knew",
                sent and sent["event"] == "gsent" and JIDS["carol"] in sent["recipients"]
                and any(e.get("nick") == "Carol" for e in sent["errors"]), brief(sent))
        got = alice.expect({"event": "groupmessage", "text": "who am I to carol"})
        r.check("alice (moderator) still decrypts bob", got and got["jid"] == JIDS["bob"], brief(got))
        de = carol.expect({"event": "group-decrypt-error", "nick": "Bob", "delayed": False})
        r.check("carol cannot attribute bob's message: unknown real JID",
                de and de["error"] == "unknown real JID" and de["jid"] is None
                and de["sender_device"] == dev["bob"], brief(de))

        # -- everyone leaves cleanly -----------------------------------------------------------------
        for name in ("alice", "bob", "carol", "dave"):
            peers[name].cmd(f"leave {ROOM}")
            left = peers[name].expect(lambda e: e["event"] == "left" or (e["event"] == "error"
                                                                          and "leave" in e.get("command", "")))
            r.check(f"{name} leaves", left and left["event"] == "left", brief(left))
        for name, p in peers.items():
            r.check(f"{name} quits with status 0", p.quit() == 0)
        errors = [(n, brief(e)) for n, p in peers.items() for e in p.unconsumed("error")]
        r.check("no unexpected error events", not errors, errors)
        # carol's history on rejoin comes from senders she can no longer identify.
        bad = [(n, brief(e)) for n, p in peers.items()
               for e in p.unconsumed("group-decrypt-error") + p.unconsumed("decrypt-error")
               if not (n == "carol" and e.get("delayed"))]
        r.check("no unexpected decrypt errors", not bad, bad)
    finally:
        for p in peers.values():
            p.kill()


def main():
    work = tempfile.mkdtemp(prefix="e2e-peer-muc-selftest-")
    r = Results()
    t0 = time.monotonic()
    try:
        with Prosody() as server:
            try:
                run(r, server, work)
            finally:
                server.save_log(os.path.join(work, "prosody.log"))
    except Exception as e:
        r.check("self-test ran to the end", False, f"{type(e).__name__}: {e}")
    print(f"{r.passed} passed, {r.failed} failed ({time.monotonic() - t0:.1f} s)")
    if r.failed or KEEP:
        print(f"logs kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main())
