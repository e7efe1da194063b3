"""admin.chat_check: `tern-chat --check self` probes the admin endpoint's
/healthz when TERN_ADMIN (or --admin) is set, and the chat port otherwise;
the image's HEALTHCHECK runs it.

Usage: test_chat_check.py TERN_CHAT
"""

import os
import socket
import subprocess
import sys

from adminlib import Program, fail


def check_self(chat, env_extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TERN_")}
    env.update(env_extra)
    r = subprocess.run([chat, "--check", "self"], capture_output=True, text=True, env=env,
                       timeout=10)
    return r.returncode, r.stderr.strip()


def main():
    chat = sys.argv[1]
    p = Program([chat, "--bind", "127.0.0.1", "--port", "0", "--workers", "2"])
    port, admin = str(p.port), str(p.admin_port)

    rc, err = check_self(chat, {"TERN_PORT": port, "TERN_ADMIN": f"127.0.0.1:{admin}"})
    if rc != 0:
        fail(f"--check self with TERN_ADMIN: exit {rc}: {err}")
    rc, err = check_self(chat, {"TERN_PORT": port, "TERN_ADMIN": admin})  # bare port: loopback
    if rc != 0:
        fail(f"--check self with TERN_ADMIN={admin}: exit {rc}: {err}")
    # The chat port speaks no HTTP: probing it as the admin endpoint must
    # fail, which shows the check really asks /healthz.
    rc, err = check_self(chat, {"TERN_PORT": port, "TERN_ADMIN": f"127.0.0.1:{port}"})
    if rc != 1 or "/healthz" not in err:
        fail(f"--check self against a chat port as admin: exit {rc}, {err!r}; want 1")
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connects are refused
    rc, err = check_self(chat, {"TERN_PORT": port,
                                "TERN_ADMIN": f"127.0.0.1:{closed.getsockname()[1]}"})
    closed.close()
    if rc != 1:
        fail(f"--check self against a closed admin port: exit {rc}, {err!r}; want 1")
    # Without TERN_ADMIN: the chat port's welcome line, as before.
    rc, err = check_self(chat, {"TERN_PORT": port})
    if rc != 0:
        fail(f"--check self without TERN_ADMIN: exit {rc}: {err}")
    p.stop()
    print("ok: --check self probes /healthz with TERN_ADMIN, the chat port without")


if __name__ == "__main__":
    main()
