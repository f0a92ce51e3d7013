"""Run a command and measure what it cost: wall time, CPU time, peak RSS and bytes read.

Shared by the `make bench` runners (verify.py, publish.py).

- CPU time (user, sys) and peak RSS come from GNU time (`/usr/bin/time -f`), i.e. the kernel's
  wait4() rusage of the command and every descendant it waited for.
- The command's own peak RSS (without its children, e.g. the `nix` processes `pipeline`
  runs) is its VmHWM from /proc/<pid>/status, sampled every 50 ms; VmHWM only grows, so the
  last sample before exit is the peak up to the final 50 ms.
- Wall time is taken here with a monotonic clock in nanoseconds (GNU time's %e has 10 ms steps).
- Bytes written to local disk are `write_bytes` of the same counters: what the command (and
  its children) caused to be written to the block layer, counted when pages are dirtied.
- Bytes read come from /proc/<pid>/io of the GNU time process, read after it has exited but
  before it is reaped (waitid with WNOWAIT): the kernel folds a reaped child's counters into its
  parent, so these are the totals of the command and its descendants. `rchar` counts every byte
  returned by read()-family calls, page-cache hits included — with a warm cache this is the
  figure that shows whether a file was read once or twice; `read_bytes` counts what the block
  layer actually fetched from disk (0 when everything was cached). GNU time's %I would only show
  the latter, in 512-byte blocks, hence /proc. Bytes reached through mmap() appear in neither.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

GNU_TIME = "/usr/bin/time"
MIB = 1024 * 1024


@dataclass
class Sample:
    """One measured run."""

    wall: float  # seconds
    user: float  # seconds
    sys: float  # seconds
    rss_kib: int  # peak resident set of the command and its children, KiB
    own_rss_kib: int  # peak resident set of the command alone (sampled VmHWM), KiB
    rchar: int  # bytes returned by read() calls
    read_bytes: int  # bytes fetched from the block device
    write_bytes: int  # bytes the command caused to be written to the block device
    stdout: str
    stderr: str
    server_cpu: float = 0.0  # seconds of CPU the cloud's servers spent meanwhile


    @property
    def cpu(self) -> float:
        return self.user + self.sys


class CommandFailed(Exception):
    """The measured command exited non-zero."""


def _io_counters(pid: int) -> dict:
    with open(f"/proc/{pid}/io") as f:
        return {k: int(v) for k, v in (line.split(":") for line in f if ":" in line)}


class _HwmSampler(threading.Thread):
    """Samples VmHWM of the command GNU time runs (GNU time's only child)."""

    def __init__(self, time_pid: int):
        super().__init__(daemon=True)
        self.time_pid = time_pid
        self.stop = threading.Event()
        self.hwm_kib = 0

    def run(self) -> None:
        child = None
        while not self.stop.is_set():
            try:
                if child is None:
                    path = f"/proc/{self.time_pid}/task/{self.time_pid}/children"
                    with open(path) as f:
                        pids = f.read().split()
                    child = int(pids[0]) if pids else None
                if child is not None:
                    with open(f"/proc/{child}/status") as f:
                        for line in f:
                            if line.startswith("VmHWM:"):
                                self.hwm_kib = max(self.hwm_kib, int(line.split()[1]))
            except (OSError, ValueError):
                pass
            self.stop.wait(0.05)


def _server_pids() -> list:
    """The pids of the servers of BENCH_SERVER_CLOUDS (space-separated cloud names) under
    BENCH_CLOUD_DIR: each Keystone's and Glance's gunicorn master and its workers."""
    cloud_dir = os.environ.get("BENCH_CLOUD_DIR", "")
    pids = []
    for cloud in os.environ.get("BENCH_SERVER_CLOUDS", "").split():
        for server in ("keystone", "glance-api"):
            try:
                with open(f"{cloud_dir}/{cloud}/run/{server}.pid") as f:
                    pid = int(f.read().strip())
                with open(f"/proc/{pid}/task/{pid}/children") as f:
                    pids += [pid, *(int(k) for k in f.read().split())]
            except (OSError, ValueError):
                continue
    return pids


def server_cpu() -> float:
    """CPU seconds (user + sys, every thread) the cloud servers have used so far."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in _server_pids():
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command name: state is field 3, utime 14 and stime 15.
        total += int(fields[11]) + int(fields[12])
    return total / tick


def run(argv: list, env=None, stdin_path=None) -> Sample:
    """Run argv and measure it: stdin is stdin_path (else closed), stdout is kept, stderr
    only for the error. Bytes the command reads from stdin count in its `rchar`."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        rusage = os.path.join(tmp, "rusage")
        out_path = os.path.join(tmp, "stdout")
        err_path = os.path.join(tmp, "stderr")
        stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            servers_before = server_cpu()
            start = time.perf_counter_ns()
            proc = subprocess.Popen(
                [GNU_TIME, "-f", "%U %S %M", "-o", rusage, *argv],
                stdin=stdin,
                stdout=out,
                stderr=err,
                env=env,
            )
            sampler = _HwmSampler(proc.pid)
            sampler.start()
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
            wall = (time.perf_counter_ns() - start) / 1e9
            servers = server_cpu() - servers_before
            io = _io_counters(proc.pid)
            sampler.stop.set()
            sampler.join()
            status = proc.wait()
        if stdin_path:
            stdin.close()
        with open(out_path, errors="replace") as f:
            stdout = f.read()
        with open(err_path, errors="replace") as f:
            stderr = f.read()
        if status != 0:
            tail = stderr.splitlines()[-20:]
            raise CommandFailed(
                f"{' '.join(argv)}: exit status {status}\n" + "\n".join(tail)
            )
        with open(rusage) as f:
            # GNU time may put a "Command exited/terminated ..." line first.
            user, sys_, rss = f.read().split()[-3:]
    return Sample(
        wall=wall,
        user=float(user),
        sys=float(sys_),
        rss_kib=int(rss),
        own_rss_kib=sampler.hwm_kib,
        rchar=io.get("rchar", 0),
        read_bytes=io.get("read_bytes", 0),
        write_bytes=io.get("write_bytes", 0),
        stdout=stdout,
        stderr=stderr,
        server_cpu=servers,
    )


@dataclass
class Summary:
    """Several runs of one tool."""

    name: str
    samples: list

    @property
    def wall(self) -> float:
        return statistics.median(s.wall for s in self.samples)

    @property
    def wall_min(self) -> float:
        return min(s.wall for s in self.samples)

    @property
    def wall_max(self) -> float:
        return max(s.wall for s in self.samples)

    @property
    def cpu(self) -> float:
        return statistics.median(s.cpu for s in self.samples)

    @property
    def server_cpu(self) -> float:
        return statistics.median(s.server_cpu for s in self.samples)

    @property
    def rss_mib(self) -> float:
        return max(s.rss_kib for s in self.samples) / 1024

    @property
    def own_rss_mib(self) -> float:
        return max(s.own_rss_kib for s in self.samples) / 1024

    @property
    def rchar_mib(self) -> float:
        return statistics.median(s.rchar for s in self.samples) / MIB

    @property
    def read_bytes_mib(self) -> float:
        return statistics.median(s.read_bytes for s in self.samples) / MIB

    @property
    def write_bytes_mib(self) -> float:
        return statistics.median(s.write_bytes for s in self.samples) / MIB


def machine_line() -> str:
    """CPU model, core count and load average, for the header of a report."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{model}, {os.cpu_count()} cores, load average {load}"


def markdown_table(header: list, rows: list) -> str:
    """A GitHub-flavoured Markdown table, columns padded so it also reads as plain text."""
    cells = [header] + rows
    widths = [max(len(str(r[i])) for r in cells) for i in range(len(header))]

    def line(r):
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep] + [line(r) for r in rows])


def write_report(doc: str, out: str) -> None:
    """Writes the Markdown report to `out` (creating its directory) and shows it."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        f.write(doc)
    print(doc)
    print(f"(written to {out})", file=sys.stderr)


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
