"""A throwaway ejabberd for checking the plugin against a second server.

Same shape as prosody.py's Prosody: each instance lives in a fresh temporary
directory (config, Mnesia spool, logs), listens for clients on a loopback
port picked at run time, and is gone (process and directory) when the
context exits. Accounts are created with `ejabberdctl register`.

Debian's ejabberdctl insists on running the VM as the `ejabberd` user when
called as root, so the directory is handed to that user. The Erlang node
gets a unique name and a fixed distribution port (ERL_DIST_PORT), which
keeps epmd out of the picture: nothing outlives the instance, and two runs
on one machine never meet.

    with Ejabberd() as server: server.register("alice")
"""

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from prosody import Account, free_port, _tail

EJABBERDCTL = "ejabberdctl"
RUN_USER = "ejabberd"
DOMAIN = "localhost"
MUC_DOMAIN = "conference.localhost"

# ejabberdctl sources this as a shell fragment.
CTL_CONFIG = """\
# Written by test/e2e/ejabberd.py for one test run; deleted afterwards.
ERLANG_NODE={node}
ERL_DIST_PORT={dist_port}
ERL_OPTIONS="-setcookie {cookie} -kernel inet_dist_use_interface {{127,0,0,1}} -env ERL_CRASH_DUMP_BYTES 0"
EJABBERD_PID_PATH={dir}/ejabberd.pid
EJABBERD_BYPASS_WARNINGS=true
"""

# No certificate: the stream offers no STARTTLS and PLAIN runs over the bare
# loopback socket, as in the Prosody set-up. PEP nodes get no forced
# configuration, so what makes OMEMO nodes open is the plugin's own
# publish-options (force_open=True adds Debian's stock override).
CONFIG = """\
# Written by test/e2e/ejabberd.py for one test run; deleted afterwards.
hosts:
  - "{domain}"
loglevel: {loglevel}
log_rotate_count: 0
hide_sensitive_log_data: false

listen:
  -
    port: {port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    max_stanza_size: 262144
    access: c2s
    starttls: false

auth_method: internal
auth_password_format: plain

acl:
  local:
    user_regexp: ""

access_rules:
  local:
    allow: local
  c2s:
    allow: all
  pubsub_createnode:
    allow: local
  muc_create:
    allow: local

api_permissions:
  "console commands":
    from:
      - ejabberd_ctl
    who: all
    what: "*"

modules:
  mod_caps: {{}}
  mod_carboncopy: {{}}
  mod_disco: {{}}
  mod_roster: {{}}
  mod_mam: {{}}
  mod_offline: {{}}
  mod_ping: {{}}
  mod_muc:
    host: "{muc}"
    access_create: muc_create
  mod_pubsub:
    access_createnode: pubsub_createnode
    plugins:
      - flat
      - pep
{force}"""

FORCE_OPEN = """\
    force_node_config:
      "eu.siacs.conversations.axolotl.*":
        access_model: open
"""


class EjabberdError(RuntimeError):
    pass


class Ejabberd:
    """with Ejabberd() as server: alice = server.register("alice")"""

    def __init__(self, start_timeout=30.0, keep=False, force_open=False, loglevel="debug"):
        self.start_timeout = start_timeout
        self.keep = keep
        self.force_open = force_open
        self.loglevel = loglevel
        self.dir = None
        self.port = None
        self.dist_port = None
        self.node = None
        self.config = None
        self.proc = None
        self.domain = DOMAIN
        self.muc_domain = MUC_DOMAIN
        self.accounts = {}

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    @property
    def log_path(self):
        return os.path.join(self.dir, "logs", "ejabberd.log")

    def log_tail(self, lines=30):
        return _tail(self.log_path, lines)

    def version(self):
        """The package's version as ejabberd reports it in its log."""
        marker = "ejabberd "
        for line in _tail(self.log_path, 100000).splitlines():
            if "is started in the node" in line:
                return line.split(marker, 1)[1].split(" ", 1)[0]
        return None

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="e2e-ejabberd-")
        for sub in ("logs", "spool"):
            os.makedirs(os.path.join(self.dir, sub))
        last = None
        for _ in range(3):
            try:
                self._start_once()
                return
            except EjabberdError as e:
                last = e
                self._terminate()
                # A half-started Mnesia must not leak into the next try.
                shutil.rmtree(os.path.join(self.dir, "spool"), ignore_errors=True)
                os.makedirs(os.path.join(self.dir, "spool"))
                self._hand_over()
        self.stop()
        raise last

    def _hand_over(self):
        """As root, ejabberdctl runs the VM as RUN_USER: give it the folder."""
        if os.geteuid() != 0:
            return
        pw = pwd.getpwnam(RUN_USER)
        for root, dirs, files in os.walk(self.dir):
            os.chown(root, pw.pw_uid, pw.pw_gid)
            for name in files:
                os.chown(os.path.join(root, name), pw.pw_uid, pw.pw_gid)

    def _ctl(self, *args):
        return [EJABBERDCTL, "--config-dir", self.dir,
                "--config", self.config,
                "--ctl-config", os.path.join(self.dir, "ejabberdctl.cfg"),
                "--logs", os.path.join(self.dir, "logs"),
                "--spool", os.path.join(self.dir, "spool")] + list(args)

    def _environment(self):
        env = dict(os.environ)
        # The package's defaults must not point us at /etc/ejabberd.
        for name in ("EJABBERD_CONFIG_PATH", "EJABBERDCTL_CONFIG_PATH", "CONTRIB_MODULES_CONF_DIR",
                     "EJABBERD_PID_PATH", "ERLANG_NODE", "ERL_DIST_PORT"):
            env.pop(name, None)
        return env

    def _start_once(self):
        self.port = free_port()
        self.dist_port = free_port()
        self.node = "e2e%s@localhost" % secrets.token_hex(4)
        self.config = os.path.join(self.dir, "ejabberd.yml")
        with open(self.config, "w") as f:
            f.write(CONFIG.format(domain=self.domain, muc=self.muc_domain, port=self.port,
                                  loglevel=self.loglevel,
                                  force=FORCE_OPEN if self.force_open else ""))
        with open(os.path.join(self.dir, "ejabberdctl.cfg"), "w") as f:
            f.write(CTL_CONFIG.format(node=self.node, dist_port=self.dist_port, dir=self.dir,
                                      cookie=secrets.token_hex(16)))
        shutil.copyfile("/etc/ejabberd/inetrc", os.path.join(self.dir, "inetrc"))
        self._hand_over()
        out = open(os.path.join(self.dir, "stdout.log"), "ab")
        try:
            self.proc = subprocess.Popen(
                self._ctl("foreground"), cwd=self.dir, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True, env=self._environment())
        finally:
            out.close()
        deadline = time.monotonic() + self.start_timeout
        listening = "Start accepting TCP connections at 127.0.0.1:%d" % self.port
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise EjabberdError("ejabberd exited with status %d during start-up\n%s"
                                    % (rc, self._diagnostics()))
            log = _tail(self.log_path, 2000)
            # The log lines prove it is our ejabberd on the port, not
            # whoever else might have taken it meanwhile.
            if listening in log and "is started in the node" in log and self._port_open():
                return
            if "eaddrinuse" in log:
                raise EjabberdError("ejabberd could not bind port %d or %d\n%s"
                                    % (self.port, self.dist_port, self._diagnostics()))
            if time.monotonic() > deadline:
                raise EjabberdError("ejabberd did not accept connections on port %d within %.0f s\n%s"
                                    % (self.port, self.start_timeout, self._diagnostics()))
            time.sleep(0.05)

    def _port_open(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def _diagnostics(self):
        return ("--- ejabberd.log (tail) ---\n%s\n--- error.log (tail) ---\n%s\n"
                "--- stdout.log (tail) ---\n%s"
                % (self.log_tail(), _tail(os.path.join(self.dir, "logs", "error.log")),
                   _tail(os.path.join(self.dir, "stdout.log"))))

    def register(self, user, password=None):
        """Creates user@localhost and returns its Account."""
        password = password or ("pw-" + user)
        res = subprocess.run(self._ctl("register", user, self.domain, password),
                             cwd=self.dir, stdin=subprocess.DEVNULL, capture_output=True,
                             timeout=60, env=self._environment())
        if res.returncode != 0:
            raise EjabberdError("ejabberdctl register %s failed (%d): %s %s"
                                % (user, res.returncode, res.stdout.decode(errors="replace"),
                                   res.stderr.decode(errors="replace")))
        account = Account(user, "%s@%s" % (user, self.domain), password, self.port)
        self.accounts[user] = account
        return account

    def _beam_pid(self):
        try:
            with open(os.path.join(self.dir, "ejabberd.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def _terminate(self):
        if self.proc is None:
            return
        beam = self._beam_pid()
        if self.proc.poll() is None:
            # The VM shuts down cleanly on SIGTERM, and su, the shell and
            # ejabberdctl follow it. Signalling the group instead makes su
            # wait two seconds before it kills the VM hard.
            try:
                if beam is not None:
                    os.kill(beam, signal.SIGTERM)
                else:
                    os.killpg(self.proc.pid, signal.SIGTERM)
            except OSError:
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except OSError:
                    pass
                self.proc.wait()
        if beam is not None:
            # Only the VM this instance wrote into its own pid file.
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and _alive(beam):
                time.sleep(0.05)
            if _alive(beam):
                try:
                    os.kill(beam, signal.SIGKILL)
                except OSError:
                    pass
        self.proc = None

    def save_log(self, dest):
        """Copies the server log out before the directory goes."""
        if self.dir and os.path.exists(self.log_path):
            shutil.copyfile(self.log_path, dest)

    def stop(self):
        self._terminate()
        if self.dir and not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not running any more.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


if __name__ == "__main__":
    # A quick manual check: start, register, print the port, stop.
    started = time.monotonic()
    with Ejabberd() as server:
        print("up in %.1f s, version %s" % (time.monotonic() - started, server.version()))
        print(server.register("alice"), server.dir)
