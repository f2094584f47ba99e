#!/usr/bin/python3
"""Finch, driven through its screen: the OMEMO plugin as a user meets it.

A throwaway Prosody; alice in a real Finch (in a private tmux server, keys
sent with send-keys, the screen read with capture-pane) loading the built
plugin; bob as the independent python OMEMO peer (test/e2e/peer.py). The
test opens a conversation from the buddy list, runs /omemo status, fp and
devices, exchanges encrypted messages, verifies and distrusts bob's device
by command, changes it in the "Fingerprints and trust" dialog reached from
bob's context menu, opens "Show my fingerprint" from the Plugins menu,
quits Finch, starts it again on the same folder and finds the decision
kept. Every check reads the screen (or the peer's events, or the plugin's
database) and prints PASS or FAIL; the last line is "N passed, N failed".

    /usr/bin/python3 test/ui/finch_test.py --build build/libomemo-c [--keep]

Screens of failed steps land in BUILD/ui-artifacts/finch/.
"""

import argparse
import os
import re
import shutil
import sqlite3
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import uienv  # noqa: E402
import harness  # noqa: E402  (test/e2e, put on the path by uienv)

CONV_TITLE = "bob (alice@localhost/finch"
DIALOG_TITLE = "Fingerprints and trust"
TRUST_NAMES = {0: "undecided", 1: "trusted (not verified)", 2: "verified", 3: "distrusted"}


class FinchTest:
    def __init__(self, build, keep):
        self.build = os.path.abspath(build)
        self.keep = keep
        self.artifacts = os.path.join(self.build, "ui-artifacts", "finch")
        self.work = tempfile.mkdtemp(prefix="ui-finch-")
        self.profile = os.path.join(self.work, "profile")
        self.home = os.path.join(self.work, "home")
        self.status_file = os.path.join(self.work, "finch.status")
        os.makedirs(self.home)
        self.tmux = uienv.Tmux("finch-test", socket_name="purple-omemo-ui-%d" % os.getpid(),
                               width=int(os.environ.get("UI_COLS", "160")))
        self.server = None
        self.bob = None
        self.bob_id = None
        self.bob_fp = None
        self.kept = None
        self.steps = uienv.Steps(on_failure=self.save_screen)
        shutil.rmtree(self.artifacts, ignore_errors=True)
        os.makedirs(self.artifacts)

    # ---- plumbing ----

    def save_screen(self, step):
        name = re.sub(r"[^a-z0-9]+", "-", step.lower()).strip("-")
        with open(os.path.join(self.artifacts, name + ".screen.txt"), "w") as f:
            f.write(self.tmux.screen())

    def start_finch(self):
        # TERM=linux: its arrow keys are the sequences tmux sends, so the
        # arrows work without keypad mode (Finch never turns it on).
        # The shell records Finch's exit status: tmux has been seen to miss
        # the end of its pane's process now and then.
        if os.path.exists(self.status_file):
            os.unlink(self.status_file)
        self.tmux.start("TERM=linux HOME=%s finch -c %s; echo $? > %s"
                        % (self.home, self.profile, self.status_file))

    def screen(self):
        return self.tmux.screen()

    def conv(self):
        return uienv.window_text(self.screen(), CONV_TITLE)

    def wait_conv(self, needle, timeout=10.0):
        """Waits until the conversation window shows needle (compared
        without whitespace); returns the window's squashed text."""
        want = uienv.squash(needle)
        got = uienv.wait_until(lambda: want in uienv.squash("".join(self.conv())), timeout)
        if not got:
            raise AssertionError("the conversation never showed %r; screen:\n%s"
                                 % (needle, self.screen()))
        return uienv.squash("".join(self.conv()))

    def type_line(self, text):
        self.tmux.text(text)
        self.tmux.keys("Enter")

    def command(self, line, expect, timeout=10.0):
        """Types a /command into the conversation and waits for expect."""
        self.type_line(line)
        return self.wait_conv(expect, timeout)

    def select(self, label, key="Down", limit=25, strip="", dropdown=False):
        """Moves the selection of the focused list or menu (or the focus
        among buttons) with key until the highlighted text starts with
        label, after dropping leading characters in strip."""
        # Buddies carry a status mark before the name.
        strip += "\u25ef\u25cf\u25cb\u2022+- "
        for _ in range(limit):
            runs = uienv.highlighted(self.tmux.run("capture-pane", "-p", "-e", "-t",
                                                   self.tmux.session).stdout, dropdown)
            if any(r.lstrip(strip).startswith(label) for r in runs):
                return
            self.tmux.keys(key)
            time.sleep(0.15)
        raise AssertionError("no row %r became selected; screen:\n%s" % (label, self.screen()))

    def focus_buddy_list(self):
        # Alt+A lists Finch's windows and actions; "Buddy List" raises it.
        self.tmux.keys("M-a")
        if not self.tmux.wait_text("Actions", 5):
            raise AssertionError("Alt+A showed no actions list:\n" + self.screen())
        self.select("Buddy List")
        self.tmux.keys("Enter")
        time.sleep(0.3)

    def close_popups(self):
        """After a failed step: closes menus (Escape) and the windows a step
        opened (Alt+C) until the conversation is on top again."""
        for _ in range(3):
            self.tmux.keys("Escape")
            time.sleep(0.15)
        for _ in range(4):
            last = self.screen().rstrip("\n").split("\n")[-1]
            tabs = [t.strip() for t in last.split("\u2502")]
            if not tabs or tabs[-1].startswith(CONV_TITLE) or tabs[-1] == "Buddy List":
                break
            self.tmux.keys("M-c")
            time.sleep(0.3)

    def query(self, sql, *args):
        """Rows from alice's OMEMO store, read-only beside the running Finch."""
        path = os.path.join(self.profile, "omemo", "alice@localhost.db")
        con = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=5)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    def own_identity(self):
        """(device id, fingerprint hex): the key without its type byte."""
        own_id, key = self.query("SELECT device_id, public_key FROM own_identity")[0]
        return own_id, bytes(key)[-32:].hex()

    def trust_state_in_db(self):
        return [r[0] for r in self.query("SELECT state FROM trust WHERE jid = ? AND device = ?",
                                         "bob@localhost", self.bob_id)]

    # ---- steps ----

    def step_setup(self):
        self.server = uienv.start_server(["alice", "bob"])
        self.bob = harness.Peer("bob", self.server.accounts["bob"],
                                os.path.join(self.work, "bob-peer"))
        self.bob.start()
        ready = self.bob.wait_ready()
        self.bob_id = ready["device_id"]
        self.bob_fp = ready["fingerprint"]
        uienv.write_profile(self.profile, "finch", [self.server.accounts["alice"]],
                            os.path.join(self.build, uienv.PLUGIN_FILE),
                            buddies={"alice": ["bob@localhost"]})

    def step_start(self):
        self.start_finch()
        # Finch lists only online buddies of connected accounts: bob shown
        # means alice signed in and the roster and presence arrived.
        got = self.tmux.wait_text(lambda s: any("bob" in line for line in
                                                uienv.window_text(s, "Buddy List")), 20)
        assert got, "bob never appeared in the buddy list:\n" + self.screen()

    def step_open_conversation(self):
        # The tree starts on the group row; bob is the only buddy below it.
        self.select("bob", key="Down")
        self.tmux.keys("Enter")
        got = self.tmux.wait_text(CONV_TITLE, 5)
        assert got, "Enter on bob opened no conversation:\n" + self.screen()

    def step_status(self):
        self.command("/omemo status", "OMEMO is on for bob@localhost")

    def step_fp(self):
        text = self.command("/omemo fp", "For a QR code:")
        m = re.search(r"Thisdevice:(\d+)\.Fingerprint:([0-9a-f]{64})\.", text)
        assert m, "no device id and fingerprint in: " + text
        own_id, fp = self.own_identity()
        assert int(m.group(1)) == own_id, "shown device %s, stored %s" % (m.group(1), own_id)
        assert m.group(2) == fp, "shown fingerprint %s, stored key %s" % (m.group(2), fp)

    def step_send_encrypted(self):
        since = self.bob.mark()
        self.type_line("hello bob, from finch")
        ev = self.bob.wait_for("message", since=since, text="hello bob, from finch", timeout=15)
        assert ev["encrypted"], "bob got the message unencrypted: %r" % ev

    def step_receive_encrypted(self):
        self.bob.send("alice@localhost", "hi alice, from the peer")
        self.wait_conv("hi alice, from the peer", 15)

    def step_devices(self):
        text = self.command("/omemo devices", "OMEMO devices of bob@localhost:")
        want = uienv.squash("%d: %s, trusted (not verified)" % (self.bob_id, self.bob_fp))
        assert want in text, "bob's device %d with fingerprint %s and trust is not in: %s" % (
            self.bob_id, self.bob_fp, text)

    def step_verify_by_command(self):
        spaced = " ".join(self.bob_fp[i:i + 8] for i in range(0, 64, 8))
        self.command("/omemo verify " + spaced,
                     "Device %d of bob@localhost is now verified." % self.bob_id)
        assert self.trust_state_in_db() == [2], "stored: %r" % self.trust_state_in_db()

    def step_distrust_by_command(self):
        self.command("/omemo distrust %d" % self.bob_id,
                     "Device %d of bob@localhost is now distrusted." % self.bob_id)
        assert self.trust_state_in_db() == [3], "stored: %r" % self.trust_state_in_db()

    def dialog_text(self):
        return uienv.squash("".join(uienv.window_text(self.screen(), DIALOG_TITLE)))

    def step_dialog_opens(self):
        self.focus_buddy_list()
        self.select("bob")
        # Ctrl+X: the context menu of the selected buddy.
        self.tmux.keys("C-x")
        time.sleep(0.4)
        self.select(DIALOG_TITLE)
        self.tmux.keys("Enter")
        want = uienv.squash("Device %d:" % self.bob_id)
        got = uienv.wait_until(lambda: want in self.dialog_text(), 5)
        with open(os.path.join(self.artifacts, "fingerprints-dialog.screen.txt"), "w") as f:
            f.write(self.screen())
        assert got, "no %r window listing device %d:\n%s" % (DIALOG_TITLE, self.bob_id,
                                                             self.screen())

    def step_dialog_fingerprint(self):
        want = uienv.squash("Device %d: %s" % (self.bob_id, self.bob_fp))
        assert want in self.dialog_text(), \
            "the dialog does not show the whole fingerprint %s:\n%s" % (self.bob_fp,
                                                                       self.screen())

    def shown_choice(self):
        """The text of the first combo box at or below the device's row:
        its choice, wherever the dialog puts the fingerprint."""
        lines = uienv.window_text(self.screen(), DIALOG_TITLE)
        rows = [i for i, line in enumerate(lines) if ("Device %d:" % self.bob_id) in line]
        assert rows, "no row for device %d:\n%s" % (self.bob_id, self.screen())
        for line in lines[rows[0]:]:
            # A combo box: "│choice     │↓│".
            m = re.search(r"\u2502([^\u2502]*)\u2502\u2193\u2502", line)
            if m:
                return m.group(1).strip()
        raise AssertionError("no choice under device %d:\n%s" % (self.bob_id, self.screen()))

    def step_dialog_current(self):
        # The device is distrusted (by command, above): the choice must say so.
        shown = self.shown_choice()
        assert shown == "distrusted", "the dialog shows %r for a distrusted device:\n%s" % (
            shown, self.screen())

    def step_dialog_save_verified(self):
        # The device's choice has the focus: Down opens its list, Enter
        # takes the selected entry.
        self.tmux.keys("Down")
        time.sleep(0.3)
        self.select("verified", key="Up", limit=6, dropdown=True)
        self.tmux.keys("Enter")
        time.sleep(0.3)
        shown = self.shown_choice()
        assert shown == "verified", "after choosing verified the dialog shows %r:\n%s" % (
            shown, self.screen())
        self.select("Save", key="Tab", limit=10, strip="_ ")
        self.tmux.keys("Enter")
        closed = uienv.wait_until(lambda: not uienv.window_text(self.screen(), DIALOG_TITLE), 5)
        assert closed, "Save did not close the dialog:\n" + self.screen()
        state = uienv.wait_until(lambda: self.trust_state_in_db() == [2], 5)
        assert state, "after choosing verified and Save the stored state is %r (2 is " \
            "verified)" % self.trust_state_in_db()

    def step_show_fingerprint_action(self):
        self.focus_buddy_list()
        # F10: the buddy list's menu bar; its Plugins menu holds each
        # loaded plugin's actions.
        self.tmux.keys("F10")
        time.sleep(0.3)
        # The open menu bar entry is drawn in reverse video; Right walks
        # the bar (from inside a submenu too).
        for _ in range(6):
            top = self.tmux.run("capture-pane", "-p", "-e", "-t",
                                self.tmux.session).stdout.split("\n")[0]
            m = re.search(r"\x1b\[7m(?:\x1b\[[0-9;]*m)*\s*([^\x1b]*)", top)
            if m and m.group(1).strip() == "Plugins":
                break
            self.tmux.keys("Right")
            time.sleep(0.2)
        else:
            raise AssertionError("F10 and Right never reached the Plugins menu:\n"
                                 + self.screen())
        self.select("OMEMO")
        self.tmux.keys("Right")
        time.sleep(0.2)
        self.select("Show my fingerprint")
        self.tmux.keys("Enter")
        own_id, fp = self.own_identity()
        want = uienv.squash("This device: %d" % own_id)
        got = uienv.wait_until(lambda: want in uienv.squash("".join(
            uienv.window_text(self.screen(), "My OMEMO fingerprint"))), 5)
        text = uienv.squash("".join(uienv.window_text(self.screen(), "My OMEMO fingerprint")))
        with open(os.path.join(self.artifacts, "show-my-fingerprint.screen.txt"), "w") as f:
            f.write(self.screen())
        assert got, "no 'My OMEMO fingerprint' window with this device:\n" + self.screen()
        assert fp in text, "the window lacks the fingerprint %s:\n%s" % (fp, self.screen())
        raw = re.findall(r"</?[a-z]+>", "".join(uienv.window_text(self.screen(),
                                                                 "My OMEMO fingerprint")))
        assert not raw, "the window shows markup as text (%s):\n%s" % (", ".join(raw),
                                                                     self.screen())
        self.tmux.keys("M-c")

    def step_quit(self):
        self.kept = self.trust_state_in_db()
        self.tmux.keys("M-q")
        def status():
            try:
                with open(self.status_file) as f:
                    return f.read().strip() or None
            except OSError:
                return None
        got = uienv.wait_until(status, 15)
        assert got, "Finch did not end within 15 s of Alt+Q:\n" + self.screen()
        # The shell reports death by signal N as 128 + N.
        assert got == "0", "Finch ended with status %s:\n%s" % (got, self.screen())
        self.tmux.kill()

    def step_restart_keeps_decision(self):
        self.start_finch()
        got = self.tmux.wait_text(lambda s: any("bob" in line for line in
                                                uienv.window_text(s, "Buddy List")), 20)
        assert got, "bob never appeared after the restart:\n" + self.screen()
        self.select("bob")
        self.tmux.keys("Enter")
        assert self.tmux.wait_text(CONV_TITLE, 5), "no conversation:\n" + self.screen()
        text = self.command("/omemo devices", "OMEMO devices of bob@localhost:")
        # The decision stored when Finch quit: verified when the dialog
        # step passed, distrusted (by command) when it did not.
        assert len(self.kept) == 1, "stored decisions at quit: %r" % self.kept
        name = TRUST_NAMES[self.kept[0]]
        want = uienv.squash("%d: %s, %s" % (self.bob_id, self.bob_fp, name))
        assert want in text, "after the restart bob's device is not %s: %s" % (name, text)

    def cleanup(self):
        self.tmux.kill()
        if self.bob is not None:
            self.bob.close()
        if self.server is not None:
            if self.steps.failed:
                self.server.save_log(os.path.join(self.artifacts, "prosody.log"))
            self.server.stop()
        if self.keep or self.steps.failed:
            dest = os.path.join(self.artifacts, "state")
            shutil.copytree(self.work, dest, symlinks=True, dirs_exist_ok=True)
        shutil.rmtree(self.work, ignore_errors=True)

    def run(self):
        s = self.steps
        try:
            s.run("setup: prosody, bob's OMEMO peer, finch profile", self.step_setup)
            s.run("finch starts, signs in, shows bob", self.step_start)
            s.run("enter on bob opens a conversation", self.step_open_conversation)
            s.run("/omemo status", self.step_status)
            s.run("/omemo fp shows this device's stored key", self.step_fp)
            s.run("a typed message reaches bob encrypted", self.step_send_encrypted)
            s.run("bob's encrypted reply shows in the conversation",
                  self.step_receive_encrypted)
            s.run("/omemo devices lists bob's device, fingerprint, trust", self.step_devices)
            s.run("/omemo verify FINGERPRINT", self.step_verify_by_command)
            s.run("/omemo distrust ID", self.step_distrust_by_command)
            s.run("context menu of bob opens Fingerprints and trust",
                  self.step_dialog_opens, needed=False, cleanup=self.close_popups)
            opened = "context menu of bob opens Fingerprints and trust"
            s.run("the dialog shows bob's whole fingerprint", self.step_dialog_fingerprint,
                  needed=False, requires=opened)
            s.run("the dialog shows the current decision", self.step_dialog_current,
                  needed=False, requires=opened)
            s.run("choosing verified and Save stores verified", self.step_dialog_save_verified,
                  needed=False, requires=opened, cleanup=self.close_popups)
            s.run("Plugins menu: OMEMO, Show my fingerprint", self.step_show_fingerprint_action,
                  needed=False, cleanup=self.close_popups)
            s.run("Alt+Q quits finch cleanly", self.step_quit)
            s.run("after a restart the decision is kept",
                  self.step_restart_keeps_decision)
        finally:
            self.cleanup()
        return s.summary()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", required=True, help="directory with purple-omemo.so")
    ap.add_argument("--keep", action="store_true", help="copy the state into the artifacts")
    args = ap.parse_args()
    for prog in ("finch", "tmux", "prosody"):
        if not shutil.which(prog):
            print("FAIL setup: %s is not installed (make deps)" % prog)
            print("0 passed, 1 failed")
            return 1
    return FinchTest(args.build, args.keep).run()


if __name__ == "__main__":
    sys.exit(main())
