"""Starts tern-kv on a free loopback port for a test, and stops it.

The server binds port 0 and the port is read back from its log line, so
two tests never race for a port. Stopping sends SIGTERM and fails the test
when the server does not exit 0 or printed a sanitizer report.
"""

import os
import re
import signal
import subprocess
import sys
import tempfile
import time

SKIP = 77  # ctest's SKIP_RETURN_CODE


def skip(why):
    print(f"SKIP: {why}")
    sys.exit(SKIP)


class KvServer:
    def __init__(self, binary, *args, workers=2):
        self.log = tempfile.NamedTemporaryFile(prefix="tern-kv-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", "0", "--workers", str(workers), *args],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.port = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.port is None:
            m = re.search(r"listening on \S+ port (\d+)", self.read_log())
            if m:
                self.port = int(m.group(1))
            elif self.proc.poll() is not None:
                break
            else:
                time.sleep(0.02)
        if self.port is None:
            self.proc.kill()
            raise RuntimeError("tern-kv did not start:\n" + self.read_log())

    def read_log(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def stop(self):
        """Graceful stop; returns the log. Raises if the exit was not clean."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise RuntimeError("tern-kv did not stop within 15 s")
        log = self.read_log()
        os.unlink(self.log.name)
        if self.proc.returncode != 0:
            raise RuntimeError(f"tern-kv exited {self.proc.returncode}:\n{log}")
        if re.search(r"ERROR: (Address|Leak)Sanitizer|runtime error:", log):
            raise RuntimeError("sanitizer report:\n" + log)
        return log

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        log = self.stop()
        if exc[0] is not None:
            sys.stderr.write(log)
        return False
