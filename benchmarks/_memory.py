"""Peak resident memory of a child process, with a cap that protects the machine."""

import json
import os
import subprocess
import sys
import time

GIB = 2**30


def run_child(module, payload, cap_bytes, timeout, env=None):
    """Run `python -m module --one JSON` and report its peak RSS and its result.

    The child prints one JSON line (its result) last on stdout. It is killed when its
    resident memory passes `cap_bytes` (a shared machine must not be driven out of
    memory by an anchor known to need 13 GiB) or when it runs past `timeout`.

    Returns:
        dict with `status` ("ok", "over_cap", "timeout" or "error"), `peak_rss_gib`
        (the child's VmHWM, the kernel's high-water mark), the child's
        result under `result`, and the tail of stderr on error.
    """
    argv = [sys.executable, "-m", module, "--one", json.dumps(payload)]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    status, started, seen = "ok", time.time(), 0
    while proc.poll() is None:
        rss = _rss_bytes(proc.pid)
        seen = max(seen, rss or 0)
        if rss is not None and rss > cap_bytes:
            status = "over_cap"
            proc.kill()
            break
        if time.time() - started > timeout:
            status = "timeout"
            proc.kill()
            break
        time.sleep(0.05)
    stdout, stderr = proc.communicate()
    result = None
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if lines:
        result = json.loads(lines[-1])
    if status == "ok" and (proc.returncode != 0 or result is None):
        status = "error"
    report = {
        "status": status,
        # The child's own VmHWM when it finished; else the most we saw polling.
        "peak_rss_gib": (result or {}).get("peak_rss_gib", seen / GIB),
        "seconds": time.time() - started,
        "result": result,
    }
    if status == "error":
        report["stderr_tail"] = stderr[-2000:]
    return report


def _rss_bytes(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def own_peak_gib():
    """This process' peak resident memory (VmHWM), read at the end of a child."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / GIB
    return None


def own_rss_gib():
    rss = _rss_bytes(os.getpid())
    return None if rss is None else rss / GIB
