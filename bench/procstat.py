"""CPU time and peak memory of a worker's process tree, read from Linux's /proc.

A Celery prefork worker is a parent plus child processes, and the children do the syncing:
the parent's own counters would show almost nothing. CPU is therefore summed over the parent,
its live children, and the children it already reaped (``cutime``/``cstime``), so a child
replaced mid-run does not take its seconds with it. Peak RSS is each process's high-water
mark (``VmHWM``), reported per process: a "worker" is one of the processes doing the work.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class TreeUsage:
    cpu_s: float
    peak_rss_mb: dict[int, float]  # pid -> VmHWM

    @property
    def max_peak_rss_mb(self) -> float:
        return max(self.peak_rss_mb.values(), default=0.0)


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()  # fields after "(comm)", state first


def cpu_seconds(pid: int, *, include_reaped: bool) -> float:
    fields = _stat_fields(pid)
    # stat(5): utime=14 stime=15 cutime=16 cstime=17 (1-based, comm=2): index 11.. here.
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    total = utime + stime + ((cutime + cstime) if include_reaped else 0)
    return total / _TICKS


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def tree_usage(root: int) -> TreeUsage:
    """The worker tree's CPU seconds so far and every process's peak RSS."""
    cpu = cpu_seconds(root, include_reaped=True)
    peaks = {root: peak_rss_mb(root)}
    for child in children(root):
        try:
            cpu += cpu_seconds(child, include_reaped=True)
            peaks[child] = peak_rss_mb(child)
        except OSError:  # exited between listing and reading: its time is in the parent's
            continue
    return TreeUsage(cpu, peaks)
