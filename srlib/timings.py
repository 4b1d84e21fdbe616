"""run_all.sh's own timing record: one row per executed notebook in ``<results>/run_all_timings.csv``.

Columns:
- ``notebook``: the executed notebook's name (``02_train_psnr``, ...); ``profile``: run_all's profile.
- ``seconds``: its wall time (papermill, kernel start included); ``started``: when it started (UTC, ISO 8601).
- ``load_start``, ``load_end``: the 1-minute load average when it started and ended; ``cpus``: the CPU count.
- ``own_cpu_s``: CPU seconds (user + system) of the notebook's processes (papermill and its kernel, from
  bash's ``times``); ``others_cpu_s``: CPU seconds every other process on the machine used meanwhile (busy time
  of ``/proc/stat`` minus ``own_cpu_s``; empty where /proc/stat is missing).
- ``quiet``: ``yes`` when the other processes used less than :data:`QUIET_SHARE` of the machine's CPU time
  (``others_cpu_s / (seconds * cpus)``) during the notebook, else ``no``; empty when unknown. This, not
  the load average, says whether the cores were quiet: a notebook that follows a busy one starts with the
  load of its predecessor still in the 1-minute average, and the load at the start says nothing of a job
  that starts later. The load averages are kept for the record.

A notebook run again replaces its own row; the rows of notebooks that ``--from`` / ``--to`` skipped stay,
so the file holds the latest run of every notebook (with its own date and conditions). run_all writes the
file in its staging folder, which starts as a copy of the results folder, so it lands in results/ with the
rest; a failed run_all leaves results/ (and this file) as they were.
"""
import csv
import io
import os
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

from .io import atomic_write

FIELDS = ("notebook", "profile", "seconds", "started", "load_start", "load_end", "cpus", "own_cpu_s",
          "others_cpu_s", "quiet")
QUIET_SHARE = 0.1      # other processes below a tenth of the machine's CPU time: quiet


def quiet(others_cpu_s, seconds, cpus=None):
    """Whether the cores were quiet: the other processes used under :data:`QUIET_SHARE` of the machine's CPU
    time during ``seconds`` of wall time."""
    return others_cpu_s < QUIET_SHARE * max(seconds, 1) * (cpus or os.cpu_count() or 1)


def busy_cpu_seconds(stat="/proc/stat"):
    """CPU seconds the whole machine has been busy since boot (all but idle and iowait), None without /proc."""
    try:
        fields = Path(stat).read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def mark():
    """'started load busy': the line run_all keeps before a notebook and gives back to :func:`record`."""
    busy = busy_cpu_seconds()
    started = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{started} {os.getloadavg()[0]:.2f} {'' if busy is None else f'{busy:.2f}'}".rstrip()


def children_cpu(times_output):
    """User + system CPU seconds of a shell's finished children, from the output of bash's ``times`` (its
    second line, e.g. '1m2.500s 0m0.250s')."""
    lines = times_output.strip().splitlines()
    values = re.findall(r"(\d+)m([\d.]+)s", lines[1] if len(lines) > 1 else "")
    return sum(60 * int(m) + float(s) for m, s in values)


def record(csv_path, notebook, profile, seconds, start_mark, own_cpu_s):
    """Replace ``notebook``'s row of ``csv_path`` (or add it at the end) with this run's; returns the row."""
    started, load_start, *busy = start_mark.split()
    busy_end, cpus = busy_cpu_seconds(), os.cpu_count() or 1
    others = busy_end - float(busy[0]) - own_cpu_s if busy and busy_end is not None else None
    row = {"notebook": notebook, "profile": profile, "seconds": int(seconds), "started": started,
           "load_start": load_start, "load_end": f"{os.getloadavg()[0]:.2f}", "cpus": cpus,
           "own_cpu_s": f"{own_cpu_s:.1f}", "others_cpu_s": "" if others is None else f"{max(others, 0.0):.1f}",
           "quiet": "" if others is None else "yes" if quiet(others, seconds, cpus) else "no"}
    path = Path(csv_path)
    rows = list(csv.DictReader(path.open())) if path.exists() else []
    names = [r["notebook"] for r in rows]
    if notebook in names:
        rows[names.index(notebook)] = row
    else:
        rows.append(row)
    out = io.StringIO()
    writer = csv.DictWriter(out, FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, lambda f: f.write(out.getvalue().encode()))
    return row


if __name__ == "__main__":
    args = sys.argv[1:]
    if args == ["mark"]:
        print(mark())
    elif len(args) == 7 and args[0] == "record":     # record CSV NOTEBOOK PROFILE SECONDS MARK TIMES_BEFORE,AFTER
        before, after = (Path(p).read_text() for p in args[6].split(","))
        record(args[1], args[2], args[3], float(args[4]), args[5], children_cpu(after) - children_cpu(before))
    else:
        sys.exit("usage: python -m srlib.timings mark | record CSV NOTEBOOK PROFILE SECONDS MARK BEFORE,AFTER")
