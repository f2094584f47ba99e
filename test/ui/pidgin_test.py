#!/usr/bin/python3
"""Pidgin under Xvfb: the "Fingerprints and trust" dialog as a user meets it.

A throwaway Prosody; alice in a real Pidgin (on a private Xvfb display,
with its own session bus so the accessibility bridge can tell where each
widget is) loading the built plugin; bob as the independent python OMEMO
peer, who writes first so alice holds his key. The test right-clicks bob
in the buddy list, clicks "Fingerprints and trust" in the context menu,
clicks "verified" for bob's device and Save, with real pointer events
(xdotool), and checks the decision in the plugin's database; then it opens
the dialog again to find "verified" selected, and quits Pidgin. Widgets
are found through AT-SPI, clicked with the mouse at their place on screen.
Every check prints PASS or FAIL; the last line is "N passed, N failed".

    /usr/bin/python3 test/ui/pidgin_test.py --build build/libomemo-c [--keep]

Screenshots and Pidgin's debug log land in BUILD/ui-artifacts/.
"""

import argparse
import importlib.util
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import uienv  # noqa: E402
import harness  # noqa: E402  (test/e2e, put on the path by uienv)

DIALOG_TITLE = "Fingerprints and trust"
TRUST_VERIFIED = 2


class PidginTest:
    def __init__(self, build, keep):
        self.build = os.path.abspath(build)
        self.keep = keep
        self.artifacts = os.path.join(self.build, "ui-artifacts")
        self.own = os.path.join(self.artifacts, "pidgin")
        self.work = tempfile.mkdtemp(prefix="ui-pidgin-")
        self.profile = os.path.join(self.work, "profile")
        self.home = os.path.join(self.work, "home")
        os.makedirs(self.home)
        self.procs = []
        self.xvfb = None
        self.bus = None
        self.pidgin = None
        self.env = None
        self.display = None
        self.server = None
        self.bob = None
        self.bob_id = None
        self.bob_fp = None
        self.atspi = None
        self.steps = uienv.Steps(on_failure=self.on_failure)
        shutil.rmtree(self.own, ignore_errors=True)
        os.makedirs(self.own)

    # ---- plumbing ----

    def spawn(self, argv, **kw):
        proc = subprocess.Popen(argv, start_new_session=True, **kw)
        self.procs.append(proc)
        return proc

    def screenshot(self, path):
        res = subprocess.run(["import", "-window", "root", path], env=self.env,
                             stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        if res.returncode != 0:
            raise AssertionError("import failed: %s" % res.stderr.decode(errors="replace"))

    def on_failure(self, step):
        if self.env is None:
            return
        name = re.sub(r"[^a-z0-9]+", "-", step.lower()).strip("-")
        try:
            self.screenshot(os.path.join(self.own, name + ".png"))
            with open(os.path.join(self.own, name + ".tree.txt"), "w") as f:
                f.write(self.dump())
        except Exception:  # noqa: BLE001 - diagnostics only
            pass

    def xdotool(self, *args):
        res = subprocess.run(["xdotool"] + list(args), env=self.env, stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=30)
        return res

    def windows_named(self, name):
        res = self.xdotool("search", "--onlyvisible", "--name", "^%s$" % re.escape(name))
        return [w for w in res.stdout.split()]

    # ---- accessibility tree ----

    def app(self):
        desktop = self.atspi.Registry.getDesktop(0)
        for i in range(desktop.childCount):
            a = desktop.getChildAtIndex(i)
            if a is not None and a.name == "Pidgin":
                return a
        return None

    def find_all(self, pred, root=None, limit=20000):
        """Accessible objects under root (Pidgin) for which pred holds."""
        root = root or self.app()
        found = []
        if root is None:
            return found
        stack = [root]
        seen = 0
        while stack and seen < limit:
            a = stack.pop()
            seen += 1
            try:
                if pred(a):
                    found.append(a)
                n = a.childCount
                # Long lists (the smiley and status menus) hold no target.
                if n > 400:
                    continue
                stack.extend(a.getChildAtIndex(i) for i in reversed(range(n)))
            except Exception:  # noqa: BLE001 - widgets vanish while we walk
                continue
        return [a for a in found if a is not None]

    def showing(self, a):
        try:
            return a.getState().contains(self.atspi.STATE_SHOWING)
        except Exception:  # noqa: BLE001
            return False

    def named(self, role, name, match=None):
        def pred(a):
            if a is None or a.getRoleName() != role:
                return False
            if match is not None:
                return bool(match(a.name or ""))
            return (a.name or "") == name
        return [a for a in self.find_all(pred) if self.showing(a)]

    def wait_named(self, role, name, timeout=10.0, match=None):
        got = uienv.wait_until(lambda: self.named(role, name, match), timeout, 0.3)
        if not got:
            raise AssertionError("no %s %r on screen within %.0f s" % (role, name, timeout))
        return got[0]

    def click(self, acc, button=1):
        """A real click (xdotool) in the middle of the widget."""
        x, y, w, h = acc.queryComponent().getExtents(self.atspi.DESKTOP_COORDS)
        assert w > 0 and h > 0, "%s %r has no size on screen" % (acc.getRoleName(), acc.name)
        self.xdotool("mousemove", "--sync", str(x + w // 2), str(y + h // 2))
        time.sleep(0.1)
        self.xdotool("click", str(button))

    def dump(self):
        lines = []

        def walk(a, depth):
            if a is None or depth > 25:
                return
            try:
                lines.append("%s%s %r%s" % ("  " * depth, a.getRoleName(), a.name,
                                            " (showing)" if self.showing(a) else ""))
                if a.childCount > 400:
                    return
                for i in range(a.childCount):
                    walk(a.getChildAtIndex(i), depth + 1)
            except Exception:  # noqa: BLE001
                pass
        walk(self.app(), 0)
        return "\n".join(lines)

    def trust_states(self):
        path = os.path.join(self.profile, "omemo", "alice@localhost.db")
        if not os.path.exists(path):
            return []
        con = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=5)
        try:
            return [r[0] for r in con.execute(
                "SELECT state FROM trust WHERE jid = ? AND device = ?",
                ("bob@localhost", self.bob_id))]
        finally:
            con.close()

    # ---- steps ----

    def step_setup(self):
        self.server = uienv.start_server(["alice", "bob"])
        self.bob = harness.Peer("bob", self.server.accounts["bob"],
                                os.path.join(self.work, "bob-peer"))
        self.bob.start()
        ready = self.bob.wait_ready()
        self.bob_id = ready["device_id"]
        self.bob_fp = ready["fingerprint"]
        uienv.write_profile(self.profile, "pidgin", [self.server.accounts["alice"]],
                            os.path.join(self.build, uienv.PLUGIN_FILE),
                            buddies={"alice": ["bob@localhost"]},
                            prefs={"/pidgin/blist/show_offline_buddies": ("bool", 1),
                                   "/pidgin/debug/enabled": ("bool", 0)})

    def step_display(self):
        # Xvfb picks a free display number and writes it to the pipe.
        rfd, wfd = os.pipe()
        self.xvfb = self.spawn(["Xvfb", "-displayfd", str(wfd), "-screen", "0", "1280x1024x24",
                                "-nolisten", "tcp"], pass_fds=(wfd,),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(wfd)
        number = b""
        deadline = time.monotonic() + 15
        while not number.endswith(b"\n") and time.monotonic() < deadline:
            chunk = os.read(rfd, 16)
            if not chunk:
                break
            number += chunk
        os.close(rfd)
        assert number.strip().isdigit(), "Xvfb reported no display (%r)" % number
        self.display = ":" + number.decode().strip()
        # A session bus of our own: the accessibility bus hangs off it.
        self.bus = self.spawn(["dbus-daemon", "--session", "--nofork", "--print-address=1"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        address = self.bus.stdout.readline().decode().strip()
        assert address, "dbus-daemon printed no address"
        self.env = dict(os.environ, DISPLAY=self.display, DBUS_SESSION_BUS_ADDRESS=address,
                        HOME=self.home, GTK_MODULES="gail:atk-bridge", LANG="C.UTF-8",
                        LC_ALL="C.UTF-8")
        self.env.pop("NO_AT_BRIDGE", None)
        self.env.pop("XAUTHORITY", None)
        # pyatspi finds the bus through these at import time.
        os.environ["DBUS_SESSION_BUS_ADDRESS"] = address
        os.environ["DISPLAY"] = self.display
        import pyatspi  # noqa: E402
        self.atspi = pyatspi

    def step_start(self):
        log = open(os.path.join(self.own, "pidgin-debug.log"), "wb")
        try:
            self.pidgin = self.spawn(["pidgin", "-c", self.profile, "-d"], env=self.env,
                                     stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT)
        finally:
            log.close()
        got = uienv.wait_until(lambda: self.windows_named("Buddy List"), 20, 0.3)
        assert got, "no Buddy List window"
        self.wait_named("frame", "Buddy List", 20)

    def step_bob_writes(self):
        # bob writes first: alice's plugin learns his key from the message.
        self.bob.send("alice@localhost", "hello alice, from the peer")
        self.bob.wait_for("sent", to="alice@localhost", timeout=15)
        got = uienv.wait_until(lambda: self.trust_states() != [], 15, 0.3)
        assert got, "alice's plugin stored no decision about bob's device %d" % self.bob_id
        # Pidgin shows the message in a conversation window named for bob.
        self.wait_named("frame", "bob", 10)

    def raise_window(self, name):
        # No window manager on Xvfb: windows overlap at the top left corner
        # and a click lands on whichever is on top.
        for w in self.windows_named(name):
            self.xdotool("windowraise", w)
        time.sleep(0.2)

    def open_dialog(self):
        self.raise_window("Buddy List")
        rows = uienv.wait_until(
            lambda: self.named("table cell", None, match=lambda n: n.startswith("bob")), 15, 0.3)
        assert rows, "bob is not in the buddy list"
        self.click(rows[0], button=3)
        item = self.wait_named("menu item", DIALOG_TITLE, 5)
        self.click(item)
        got = uienv.wait_until(lambda: self.windows_named(DIALOG_TITLE), 10, 0.3)
        assert got, "xdotool finds no window named %r" % DIALOG_TITLE
        return self.wait_named("dialog", DIALOG_TITLE, 10, match=lambda n: n == DIALOG_TITLE) \
            if self.named("dialog", DIALOG_TITLE) else self.wait_named("frame", DIALOG_TITLE, 10)

    def radio(self, dialog, label):
        found = self.find_all(lambda a: a.getRoleName() == "radio button"
                              and (a.name or "").replace("_", "") == label, root=dialog)
        assert len(found) == 1, "%d radio buttons %r in the dialog (one device expected)" % (
            len(found), label)
        return found[0]

    def step_dialog_from_context_menu(self):
        self.dialog = self.open_dialog()
        labels = self.find_all(lambda a: a.getRoleName() == "label", root=self.dialog)
        text = uienv.squash(" ".join(a.name or "" for a in labels))
        want = uienv.squash("Device %d: %s" % (self.bob_id, self.bob_fp))
        assert want in text, "the dialog does not show %r; its labels: %s" % (
            want, [a.name for a in labels])

    def step_choose_verified(self):
        self.click(self.radio(self.dialog, "verified"))
        ok = uienv.wait_until(lambda: self.radio(self.dialog, "verified").getState().contains(
            self.atspi.STATE_CHECKED), 5, 0.2)
        assert ok, "clicking verified did not select it"
        self.screenshot(os.path.join(self.artifacts, "pidgin-fingerprints.png"))

    def step_save(self):
        buttons = self.find_all(lambda a: a.getRoleName() == "push button"
                                and (a.name or "").replace("_", "") == "Save", root=self.dialog)
        assert buttons, "no Save button in the dialog"
        self.click(buttons[0])
        gone = uienv.wait_until(lambda: not self.windows_named(DIALOG_TITLE), 10, 0.3)
        assert gone, "the dialog stayed open after Save"
        stored = uienv.wait_until(lambda: self.trust_states() == [TRUST_VERIFIED], 10, 0.3)
        assert stored, "stored decision for bob's device: %r (2 is verified)" % (
            self.trust_states(),)

    def step_dialog_shows_decision(self):
        dialog = self.open_dialog()
        checked = self.radio(dialog, "verified").getState().contains(self.atspi.STATE_CHECKED)
        self.screenshot(os.path.join(self.own, "dialog-reopened.png"))
        buttons = self.find_all(lambda a: a.getRoleName() == "push button"
                                and (a.name or "").replace("_", "") == "Cancel", root=dialog)
        if buttons:
            self.click(buttons[0])
        assert checked, "reopened, the dialog does not show verified selected"

    def step_quit(self):
        # Buddies > Quit, clicked like a user would.
        self.raise_window("Buddy List")
        menu = self.wait_named("menu", "Buddies", 5)
        self.click(menu)
        time.sleep(0.5)
        # The open menu's items do not always report "showing" to the
        # accessibility bus: look under the menu itself.
        quit_item = self.find_all(lambda a: a.getRoleName() == "menu item"
                                  and a.name == "Quit", root=menu)
        assert quit_item, "no Quit in the Buddies menu"
        self.click(quit_item[0])
        try:
            status = self.pidgin.wait(timeout=15)
        except subprocess.TimeoutExpired:
            raise AssertionError("Pidgin did not quit within 15 s") from None
        assert status == 0, "Pidgin exited with status %d" % status

    def cleanup(self):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except OSError:
                    pass
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        if self.bob is not None:
            self.bob.close()
        if self.server is not None:
            if self.steps.failed:
                self.server.save_log(os.path.join(self.own, "prosody.log"))
            self.server.stop()
        if self.keep or self.steps.failed:
            shutil.copytree(self.work, os.path.join(self.own, "state"), symlinks=True,
                            dirs_exist_ok=True)
        shutil.rmtree(self.work, ignore_errors=True)

    def run(self):
        s = self.steps
        try:
            s.run("setup: prosody, bob's OMEMO peer, pidgin profile", self.step_setup)
            s.run("Xvfb and a session bus", self.step_display)
            s.run("pidgin starts with the plugin and shows its buddy list", self.step_start)
            s.run("bob's encrypted message gives alice his device", self.step_bob_writes)
            s.run("right-click bob, Fingerprints and trust: the dialog lists his device",
                  self.step_dialog_from_context_menu)
            s.run("clicking verified selects it (screenshot)", self.step_choose_verified)
            s.run("Save stores verified", self.step_save)
            s.run("reopened, the dialog shows verified", self.step_dialog_shows_decision,
                  needed=False)
            s.run("Buddies > Quit ends pidgin cleanly", self.step_quit)
        finally:
            self.cleanup()
        return s.summary()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", required=True, help="directory with purple-omemo.so")
    ap.add_argument("--keep", action="store_true", help="copy the state into the artifacts")
    args = ap.parse_args()
    missing = [p for p in ("pidgin", "Xvfb", "xdotool", "import", "dbus-daemon", "prosody")
               if not shutil.which(p)]
    # Only looked up here: importing it binds it to the session bus, which
    # must be the test's own.
    if importlib.util.find_spec("pyatspi") is None:
        missing.append("python3-pyatspi")
    if missing:
        print("FAIL setup: not installed: %s (make deps)" % ", ".join(missing))
        print("0 passed, 1 failed")
        return 1
    return PidginTest(args.build, args.keep).run()


if __name__ == "__main__":
    sys.exit(main())
