"""Run a command and measure what it cost: wall time, CPU time, peak RSS and bytes read.

Shared by the `make bench` runners (verify.py, publish.py).

- CPU time (user, sys) and peak RSS come from GNU time (`/usr/bin/time -f`), i.e. the kernel's
  wait4() rusage of the command and every descendant it waited for.
- Wall time is taken here with a monotonic clock in nanoseconds (GNU time's %e has 10 ms steps).
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
    rss_kib: int  # peak resident set, KiB
    rchar: int  # bytes returned by read() calls
    read_bytes: int  # bytes fetched from the block device
    stdout: str

    @property
    def cpu(self) -> float:
        return self.user + self.sys


class CommandFailed(Exception):
    """The measured command exited non-zero."""


def _io_counters(pid: int) -> dict:
    with open(f"/proc/{pid}/io") as f:
        return {k: int(v) for k, v in (line.split(":") for line in f if ":" in line)}


def run(argv: list, env=None) -> Sample:
    """Run argv (stdin closed, stdout kept, stderr kept for the error) and measure it."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        rusage = os.path.join(tmp, "rusage")
        out_path = os.path.join(tmp, "stdout")
        err_path = os.path.join(tmp, "stderr")
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            start = time.perf_counter_ns()
            proc = subprocess.Popen(
                [GNU_TIME, "-f", "%U %S %M", "-o", rusage, *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=env,
            )
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
            wall = (time.perf_counter_ns() - start) / 1e9
            io = _io_counters(proc.pid)
            status = proc.wait()
        with open(out_path, errors="replace") as f:
            stdout = f.read()
        if status != 0:
            with open(err_path, errors="replace") as f:
                tail = f.read().splitlines()[-20:]
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
        rchar=io.get("rchar", 0),
        read_bytes=io.get("read_bytes", 0),
        stdout=stdout,
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
    def rss_mib(self) -> float:
        return max(s.rss_kib for s in self.samples) / 1024

    @property
    def rchar_mib(self) -> float:
        return statistics.median(s.rchar for s in self.samples) / MIB

    @property
    def read_bytes_mib(self) -> float:
        return statistics.median(s.read_bytes for s in self.samples) / MIB


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


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
