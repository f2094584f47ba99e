#!/usr/bin/python3
"""Try the plugin by hand: a throwaway Prosody and Finch in tmux.

    /usr/bin/python3 test/ui/demo.py start --build build/libomemo-c
    /usr/bin/python3 test/ui/demo.py stop --build build/libomemo-c

start runs Prosody on a free loopback port with the accounts alice and bob
(mutual contacts), writes a Finch configuration with both accounts and the
built plugin, starts Finch in the tmux session "purple-omemo-demo" and says
how to use it. stop quits Finch, stops Prosody and deletes everything the
demo wrote. `make demo` and `make demo-stop` call these.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import uienv  # noqa: E402

SESSION = "purple-omemo-demo"
PASSWORDS = {"alice": "alice", "bob": "bob"}


def state_path(build):
    return os.path.join(os.path.abspath(build), "demo.json")


def load_state(build):
    try:
        with open(state_path(build)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def usage_text(state):
    return """\
The demo is running: Prosody on 127.0.0.1:{port}, Finch in tmux.

  Attach:   tmux attach -t {session}        (detach again: Ctrl+B, then D)

In Finch (Alt is the Meta key; if Alt does not work, press Esc and then the key):
  - The buddy list shows both accounts' contacts: "bob" (alice's contact)
    and "alice" (bob's contact). Move with the arrow keys onto "bob" and
    press Enter: a conversation from alice to bob opens.
  - Type a message and press Enter: bob's side opens its own window with
    the decrypted message. Alt+N / Alt+P switch windows, Alt+W lists them.
  - In a conversation:  /omemo status    what the next message is encrypted for
                        /omemo fp        this device's fingerprint
                        /omemo devices   the contact's devices and their trust
                        /omemo help      every subcommand
  - Fingerprints and trust: in the buddy list select a contact, press
    Ctrl+X for its menu. The plugin's actions (Show my fingerprint, Manage
    my devices, Check the server): F10 in the buddy list, then the Plugins
    menu, OMEMO.
  - Alt+Q quits Finch.

Accounts: alice@localhost / {pw_alice}, bob@localhost / {pw_bob} (port {port}, no TLS).
Files: {dir}

Stop everything and delete the files:  make demo-stop
""".format(port=state["port"], session=SESSION, dir=state["dir"], pw_alice=PASSWORDS["alice"],
           pw_bob=PASSWORDS["bob"])


def tmux_has_session():
    return subprocess.run(["tmux", "has-session", "-t", SESSION], stdin=subprocess.DEVNULL,
                          capture_output=True).returncode == 0


def start(build):
    plugin = os.path.join(os.path.abspath(build), uienv.PLUGIN_FILE)
    if not os.path.exists(plugin):
        print("%s is missing: run make first" % plugin, file=sys.stderr)
        return 1
    for prog in ("finch", "tmux", "prosody"):
        if not shutil.which(prog):
            print("%s is not installed: run make deps" % prog, file=sys.stderr)
            return 1
    if load_state(build) or tmux_has_session():
        print("A demo is already running (make demo-stop ends it).", file=sys.stderr)
        return 1

    folder = tempfile.mkdtemp(prefix="purple-omemo-demo-")
    server = uienv.prosody.Prosody(keep=True)
    server.start()
    try:
        for user in ("alice", "bob"):
            server.register(user, PASSWORDS[user])
        uienv.write_roster(server, "alice", ["bob"])
        uienv.write_roster(server, "bob", ["alice"])
        profile = os.path.join(folder, "finch")
        accounts = [server.accounts["alice"], server.accounts["bob"]]
        uienv.write_profile(profile, "finch", accounts, plugin,
                            buddies={"alice": ["bob@localhost"], "bob": ["alice@localhost"]})
        # TERM=linux: its arrow keys are the ones tmux sends, which Finch
        # (it never asks for keypad mode) would not understand otherwise.
        subprocess.run(["tmux", "new-session", "-d", "-s", SESSION, "-x", "160", "-y", "48",
                        "TERM=linux finch -c %s" % profile], check=True,
                       stdin=subprocess.DEVNULL)
    except Exception:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)
        raise
    state = {"dir": folder, "prosody_dir": server.dir, "prosody_pid": server.proc.pid,
             "port": server.port}
    with open(state_path(build), "w") as f:
        json.dump(state, f)
    # Finch is up in well under a second; make sure it did not fail at once.
    time.sleep(1.0)
    if not tmux_has_session():
        print("Finch exited right away; stopping the demo.", file=sys.stderr)
        stop(build)
        return 1
    print(usage_text(state))
    return 0


def stop(build):
    state = load_state(build)
    if tmux_has_session():
        # Alt+Q first, so Finch saves its state and signs off cleanly.
        subprocess.run(["tmux", "send-keys", "-t", SESSION, "M-q"], stdin=subprocess.DEVNULL,
                       capture_output=True)
        deadline = time.monotonic() + 5
        while tmux_has_session() and time.monotonic() < deadline:
            time.sleep(0.2)
        subprocess.run(["tmux", "kill-session", "-t", SESSION], stdin=subprocess.DEVNULL,
                       capture_output=True)
    if state is None:
        print("No demo state found; nothing else to stop.")
        return 0
    pid = state.get("prosody_pid")
    if pid:
        try:
            # Only our Prosody: the pid must still run our config.
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                ours = state["prosody_dir"].encode() in f.read()
        except OSError:
            ours = False
        if ours:
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                if not os.path.exists("/proc/%d" % pid):
                    break
                time.sleep(0.1)
    for key in ("dir", "prosody_dir"):
        if state.get(key):
            shutil.rmtree(state[key], ignore_errors=True)
    os.unlink(state_path(build))
    print("Demo stopped; its files are deleted.")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=("start", "stop", "status"))
    ap.add_argument("--build", required=True, help="directory with purple-omemo.so")
    args = ap.parse_args()
    if args.command == "start":
        return start(args.build)
    if args.command == "stop":
        return stop(args.build)
    state = load_state(args.build)
    if state is None:
        print("No demo is running.")
        return 1
    print(usage_text(state))
    return 0


if __name__ == "__main__":
    sys.exit(main())
