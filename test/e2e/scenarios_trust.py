"""Trust with a real peer: blind trust before verification, then a new
device after the user verified one needs a decision before anything is
encrypted for it."""

from scenarios_devices import (assert_sent_encrypted, exchange_one, start_alice_with_peer_bob,
                               wait_devicelist_event)


def scenario_new_device_after_verification_waits_for_decision(ctx):
    alice, bob, _, bob_id = start_alice_with_peer_bob(ctx)
    since = exchange_one(alice, [bob], "before verifying")
    assert_sent_encrypted(alice, bob.bare, "before verifying", since, rids={bob_id})

    # alice compares bob's fingerprint and verifies it (spaces, upper case).
    fp = bob.wait_ready()["fingerprint"].replace(" ", "").upper()
    spaced = " ".join(fp[i:i + 8] for i in range(0, len(fp), 8))
    mark = alice.mark()
    alice.cmd(bob.bare, "omemo verify " + spaced)
    alice.wait_for("conv", flags="system", plain__contains="verified", since=mark)
    # A wrong fingerprint changes nothing and says so.
    mark = alice.mark()
    alice.cmd(bob.bare, "omemo verify " + "0" * 64)
    alice.wait_for("conv", flags="system", plain__contains="belongs to no known device",
                   since=mark)

    # bob adds a device: alice learns of it, but must decide first.
    pep_mark = alice.mark()
    bob2 = ctx.peer("bob", name="bob2")
    bob2_id = bob2.wait_ready()["device_id"]
    wait_devicelist_event(alice, bob.bare, lambda ids: bob2_id in ids, since=pep_mark)

    text = "only for the verified device"
    bob2_mark = bob2.mark()
    since = exchange_one(alice, [bob], text)
    assert_sent_encrypted(alice, bob.bare, text, since, rids={bob_id})
    # The user was asked: a prompt, and a notice naming the device.
    alice.wait_for("request", since=since, primary__contains=str(bob2_id))
    alice.wait_for("conv", flags="system", plain__contains="awaits your decision", since=since)
    assert not bob2.find("message", text=text, since=bob2_mark), "the new device got it"

    # alice decides to trust it: from then on it gets the messages.
    mark = alice.mark()
    alice.cmd(bob.bare, "omemo trust %d" % bob2_id)
    alice.wait_for("conv", flags="system", plain__contains="is now trusted", since=mark)
    text = "now for both devices"
    since = exchange_one(alice, [bob, bob2], text)
    assert_sent_encrypted(alice, bob.bare, text, since, rids={bob_id, bob2_id})


def scenario_distrusted_device_gets_nothing(ctx):
    alice, bob, _, bob_id = start_alice_with_peer_bob(ctx)
    exchange_one(alice, [bob], "hello")
    mark = alice.mark()
    alice.cmd(bob.bare, "omemo distrust %d" % bob_id)
    alice.wait_for("conv", flags="system", plain__contains="distrusted", since=mark)
    # With its only device distrusted, nothing goes out, the text is kept.
    since = alice.mark()
    bob_mark = bob.mark()
    alice.send(bob.bare, "must stay here")
    notice = alice.wait_for("conv", flags="system", plain__contains="NOT sent", since=since)
    assert "must stay here" in notice["plain"], notice
    assert "omemo trust" in notice["plain"], notice
    assert not alice.xml_out("must stay here", since=since)
    assert not bob.find("message", text="must stay here", since=bob_mark)
    # Messages from the distrusted device are shown, marked.
    mark = alice.mark()
    bob.send(alice.bare, "from a distrusted device")
    got = alice.wait_for("conv", flags="recv", plain__contains="from a distrusted device",
                         since=mark)
    assert "distrusted" in got["plain"].split("from a distrusted device")[0], got


def scenario_omemo_fp_and_devices_commands(ctx):
    alice, bob, alice_id, bob_id = start_alice_with_peer_bob(ctx)
    exchange_one(alice, [bob], "hello")
    mark = alice.mark()
    alice.cmd(bob.bare, "omemo fp")
    fp = alice.wait_for("conv", flags="system", plain__contains="Fingerprint", since=mark)
    assert ("xmpp:%s?omemo-sid-%d=" % (alice.bare, alice_id)) in fp["plain"], fp
    mark = alice.mark()
    alice.cmd(bob.bare, "omemo devices")
    dev = alice.wait_for("conv", flags="system", plain__contains=str(bob_id), since=mark)
    spaced = bob.wait_ready()["fingerprint"].lower()
    assert spaced.replace(" ", "")[:8] in dev["plain"].replace(" ", ""), dev
    mark = alice.mark()
    alice.cmd(bob.bare, "omemo trust notanumber")
    alice.wait_for("conv", flags="system", plain__contains="Usage: /omemo", since=mark)


def scenario_device_list_change_is_announced(ctx):
    alice, bob, _, bob_id = start_alice_with_peer_bob(ctx)
    since = exchange_one(alice, [bob], "hello")
    alice.wait_for("conv", flags="system",
                   plain="Messages in this conversation are encrypted with OMEMO.", since=since)
    pep_mark = alice.mark()
    bob2 = ctx.peer("bob", name="bob2")
    bob2_id = bob2.wait_ready()["device_id"]
    wait_devicelist_event(alice, bob.bare, lambda ids: bob2_id in ids, since=pep_mark)
    alice.wait_for("conv", flags="system",
                   plain="%s has new OMEMO devices: %d." % (bob.bare, bob2_id), since=pep_mark)


def scenario_changed_key_on_known_device_is_not_accepted_silently(ctx):
    from scenarios_devices import peer_publish_devicelist
    alice, bob, _, bob_id = start_alice_with_peer_bob(ctx)
    exchange_one(alice, [bob], "with the first key")

    # bob's device is reinstalled: same device id, a new identity key. Its
    # old id leaves the list first (published by a client without OMEMO,
    # once the old device is gone: it would add itself back).
    old_fp = bob.wait_ready()["fingerprint"]
    assert bob.quit() == 0
    admin = ctx.peer("bob", name="bob-admin", omemo=False)
    admin.wait_ready()
    peer_publish_devicelist(admin, [1])
    assert admin.quit() == 0
    again = ctx.peer("bob", name="bob-reinstalled", device_id=bob_id)
    ready = again.wait_ready()
    assert ready["device_id"] == bob_id, ready
    assert ready["fingerprint"] != old_fp

    # It writes first: the message is shown, marked, and alice is told
    # that the device's key changed, and asked.
    mark = alice.mark()
    again.send(alice.bare, "from the new key")
    got = alice.wait_for("conv", flags="recv", plain__contains="from the new key", since=mark,
                         timeout=20)
    assert "undecided" in got["plain"], got
    alice.wait_for("conv", flags="system", plain__contains="DIFFERENT key", since=mark)
    alice.wait_for("request", since=mark, primary__contains="new key")

    # Nothing is encrypted for the new key until alice decides.
    since = alice.mark()
    alice.send(bob.bare, "not for an unknown key")
    notice = alice.wait_for("conv", flags="system", plain__contains="NOT sent", since=since)
    assert "not for an unknown key" in notice["plain"], notice
    assert not alice.xml_out("not for an unknown key", since=since)
    assert not alice.xml_out(lambda el: el.tag == "message" and el.find("encrypted/payload")
                             is not None, since=since)
