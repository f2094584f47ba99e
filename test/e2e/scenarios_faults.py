"""What the plugin does when its own state is broken: a damaged database is
refused and left as it is, and nothing is sent in plaintext by mistake."""

import os

from harness import OMEMO_PLUGIN


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
