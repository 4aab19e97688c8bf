"""Plain-process supervision for the local stack: pid files, port checks, waits, Java."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from jobs.config import REPO_ROOT

# Where the local services keep data, logs and pid files. GRIDSTREAM_STACK_DIR runs a second,
# separate stack from the same checkout (give it other ports too).
STACK_DIR = Path(os.environ.get("GRIDSTREAM_STACK_DIR", REPO_ROOT / ".stack")).resolve()


def display_path(path: Path) -> str:
    path = Path(path)
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


class StackError(RuntimeError):
    """A problem the user can fix; the message is one line naming the cause and the fix."""


def read_pid(pid_file: Path, marker: str) -> int | None:
    """The pid in `pid_file` if that process is alive and its command line contains `marker`.
    A stale pid file (process gone, or the pid reused by something else) is removed."""
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    if process_matches(pid, marker):
        return pid
    pid_file.unlink(missing_ok=True)
    print(f"  removed stale pid file {pid_file} (process {pid} is not running)")
    return None


def process_matches(pid: int, marker: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    return marker in cmdline


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def require_free_port(host: str, port: int, what: str, env_var: str) -> None:
    if port_in_use(host, port):
        raise StackError(f"port {port} on {host} (for {what}) is in use by another process: "
                         f"stop that process or choose another port with {env_var}=<port>")


def wait_until(check: Callable[[], bool], timeout: float, what: str,
               alive: Callable[[], bool] | None = None, log: Path | None = None) -> float:
    """Poll `check` until true; fail early if `alive` says the process died. Returns seconds."""
    start = time.monotonic()
    while True:
        if check():
            return time.monotonic() - start
        if alive is not None and not alive():
            raise StackError(f"{what} exited during start-up: see {log}{last_line(log)}")
        if time.monotonic() - start > timeout:
            raise StackError(f"{what} did not become ready within {timeout:.0f}s: see {log}")
        time.sleep(0.25)


def last_line(log: Path | None) -> str:
    if log is None or not log.exists():
        return ""
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if "ERROR" in line or "FATAL" in line or "Exception" in line]
    pick = (errors or lines or [""])[-1].strip()
    return f" (last: {pick[:200]})" if pick else ""


def stop_pid(pid: int, marker: str, timeout: float = 30.0) -> None:
    """SIGTERM, then SIGKILL after `timeout`: the process and its group are gone on return."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while process_matches(pid, marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    if process_matches(pid, marker):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while process_matches(pid, marker):
            time.sleep(0.1)


def java_executable(min_version: int = 17) -> str:
    """The `java` to use (JAVA_HOME first), checked to be at least `min_version`."""
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not Path(java).exists():
        raise StackError(f"Java {min_version}+ not found: install it (Debian: apt-get install "
                         f"openjdk-{min_version}-jre-headless) or set JAVA_HOME")
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    major = int(match.group(1)) if match else 0
    if major == 1 and match and match.group(2):
        major = int(match.group(2))
    if major < min_version:
        raise StackError(f"Java {major} found at {java}, but {min_version}+ is needed: install "
                         f"openjdk-{min_version} or point JAVA_HOME at it")
    return java


def env_port(name: str, default: int) -> int:
    value = os.environ.get(name, str(default))
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise StackError(f"{name}={value!r} is not a port number: set it to 1-65535")
    return int(value)
