"""Campaigns of many simulator runs on Dask: batches out, partial aggregates back, folded as
they arrive, checkpointed, resumable, with a progress line and an ETA.

    result = campaign.run(batches, work, fold, out_dir=..., key={...}, scheduler=None,
                          workers=2, resume=False, progress=sys.stderr)

- `batches` is an iterable of `Batch(id, cost, pump_days, payload)`, in a fixed order; the ids
  are unique and the same for the same campaign (that is what `--resume` matches).
- `work(payload)` runs on a worker (a module-level function, importable there) and returns a
  JSON-able partial aggregate; its CPU time is measured there, as CPU time (the worker's
  thread), not wall time.
- `fold(partial)` merges one partial into the caller's aggregate; it must not depend on the
  order partials arrive in (counts, sums of integers, maxima with a fixed tie-break), so the
  same campaign gives the same table on one worker or many.

Execution: a `distributed.LocalCluster` on 127.0.0.1 only (no dashboard) by default, one
single-threaded worker process per core; `scheduler="tcp://host:8786"` uses an existing
cluster (docs/study.md); `scheduler="none"` runs every batch in this process (debugging, and
the fast unit tests). At most a few batches per worker are in flight, so memory stays flat
whatever the number of batches.

Checkpoint: `<out_dir>/checkpoint.jsonl`, a first line with the campaign's key, then one line
per finished batch (its id, partial, CPU and wall seconds), flushed as it comes. `resume=True`
folds the batches already there and runs only the others; a torn last line (the process was
killed while writing) is ignored and that batch runs again.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TextIO

CHECKPOINT = "checkpoint.jsonl"
IN_PROCESS = "none"
LOOPBACK = "127.0.0.1"
CONNECT_TIMEOUT = "20s"          # to reach an existing scheduler


class CampaignError(Exception):
    """A campaign cannot start or go on (bad checkpoint, unreachable scheduler)."""


@dataclass
class Batch:
    id: int
    cost: float          # estimated work (any unit, the same for every batch): the ETA's
    pump_days: float     # simulated pump-days the batch stands for (the progress line)
    payload: Any         # what `work` gets


@dataclass
class Outcome:
    batches: int = 0             # batches folded (resumed ones included)
    resumed: int = 0             # of which read back from the checkpoint
    cpu_s: float = 0.0           # workers' CPU time, all batches (resumed ones included)
    cpu_s_now: float = 0.0       # of which spent in this invocation
    wall_s: float = 0.0          # wall time of this invocation
    wall_s_all: float = 0.0      # of every invocation that added to the checkpoint
    pump_days: float = 0.0
    pump_days_now: float = 0.0
    workers: int = 0
    scheduler: str = ""          # what ran the batches, in words
    address: str = ""            # the scheduler's address (Dask)


def timed(work: Callable[[Any], Any], payload: Any) -> dict[str, Any]:
    """Run one batch, measuring its CPU time (this thread's, plus what a child process it
    ran the batch in reports: `child_cpu_s` in its partial) and wall time: on the worker."""
    c0 = time.thread_time()
    w0 = time.perf_counter()
    partial = work(payload)
    cpu_s = time.thread_time() - c0
    if isinstance(partial, dict):
        cpu_s += float(partial.get("child_cpu_s", 0.0))
    return {"partial": partial, "cpu_s": cpu_s, "wall_s": time.perf_counter() - w0}


# --- checkpoint ------------------------------------------------------------------------------

def read_checkpoint(path: str, key: dict[str, Any]) -> list[dict[str, Any]]:
    """The finished batches recorded at path for the campaign `key` (in file order)."""
    if not os.path.exists(path):
        return []
    done: list[dict[str, Any]] = []
    with open(path) as f:
        lines = f.read().split("\n")
    try:
        head = json.loads(lines[0])
    except ValueError:
        head = None
    if not isinstance(head, dict) or "campaign" not in head:
        raise CampaignError("%s is not a campaign checkpoint (first line: %r)"
                            % (path, lines[0][:80]))
    was = head["campaign"]
    if isinstance(was, dict) and "firmware_sha256" in key \
            and was.get("firmware_sha256") != key["firmware_sha256"] \
            and {k: v for k, v in was.items() if k != "firmware_sha256"} \
            == {k: v for k, v in key.items() if k != "firmware_sha256"}:
        raise CampaignError(
            "--resume: the firmware changed since the campaign in %s began (its firmware "
            "sha256 %s, now %s): one campaign's table comes from one firmware; run without "
            "--resume to start it again, or give another --out"
            % (path, str(was.get("firmware_sha256") or "not recorded")[:16],
               str(key["firmware_sha256"])[:16]))
    if was != key:
        raise CampaignError(
            "--resume: %s is a checkpoint of another campaign (%s); run without --resume to "
            "start this one there, or give another --out" % (path, _describe(head["campaign"])))
    for line in lines[1:]:
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue                  # a torn last line: that batch runs again
        if isinstance(rec, dict) and "batch" in rec:
            done.append(rec)
    return done


def _describe(key: dict[str, Any]) -> str:
    return ", ".join("%s=%s" % (k, key[k]) for k in sorted(key))


class _Checkpoint:
    def __init__(self, path: str, key: dict[str, Any], append: bool) -> None:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        if append and os.path.exists(path):
            self.f = open(path, "a")
            self._mend()
        else:
            self.f = open(path, "w")
            self.f.write(json.dumps({"campaign": key}) + "\n")
            self.f.flush()

    def _mend(self) -> None:
        """A file cut mid-line gets its newline, so the next record starts a line."""
        if self.f.tell() > 0:
            with open(self.f.name, "rb") as r:
                r.seek(-1, os.SEEK_END)
                if r.read(1) != b"\n":
                    self.f.write("\n")

    def add(self, batch_id: int, res: dict[str, Any], inv: str, elapsed_s: float) -> None:
        self.f.write(json.dumps({"batch": batch_id, "partial": res["partial"],
                                 "cpu_s": round(res["cpu_s"], 4),
                                 "wall_s": round(res["wall_s"], 4),
                                 "inv": inv, "elapsed_s": round(elapsed_s, 3)}) + "\n")
        self.f.flush()

    def close(self) -> None:
        self.f.close()


# --- progress --------------------------------------------------------------------------------

class Progress:
    """One line on a stream: batches, pump-days, throughput and the ETA; redrawn in place on
    a terminal, otherwise a line every 5 % or every minute (and at the end)."""

    def __init__(self, stream: TextIO | None, total_batches: int, total_cost: float,
                 total_days: float) -> None:
        self.stream = stream
        self.tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
        self.total_batches = total_batches
        self.total_cost = total_cost
        self.total_days = total_days
        self.t0 = time.perf_counter()
        self.cost0 = 0.0              # cost already done when this invocation started
        self.days0 = 0.0              # pump-days likewise
        self.last_pct = -1
        self.last_draw = 0.0

    def start(self, cost_done: float, days_done: float) -> None:
        self.cost0 = cost_done
        self.days0 = days_done
        self.t0 = time.perf_counter()

    def line(self, batches: int, cost: float, days: float) -> str:
        el = time.perf_counter() - self.t0
        frac = cost / self.total_cost if self.total_cost > 0 else 1.0
        width = 24
        fill = int(round(width * min(1.0, frac)))
        now_cost = cost - self.cost0
        left = self.total_cost - cost
        eta = "-" if now_cost <= 0 else _hms(el * left / now_cost)
        rate = (days - self.days0) / el if el > 0 else 0.0
        return "[%s%s] %3d%%  %d/%d batches  %s/%s pump-days  %.1f d/s  %s elapsed  ETA %s" % (
            "#" * fill, "." * (width - fill), int(100 * frac), batches, self.total_batches,
            _num(days), _num(self.total_days), rate, _hms(el), eta)

    def update(self, batches: int, cost: float, days: float, final: bool = False) -> None:
        if self.stream is None:
            return
        pct = int(100 * cost / self.total_cost) if self.total_cost > 0 else 100
        now = time.perf_counter()
        if self.tty:
            if final or now - self.last_draw >= 0.2:
                self.stream.write("\r" + self.line(batches, cost, days) + ("\n" if final
                                                                           else ""))
                self.last_draw = now
        elif final or pct // 5 != self.last_pct // 5 or now - self.last_draw >= 60.0:
            self.stream.write(self.line(batches, cost, days) + "\n")
            self.last_draw = now
        self.last_pct = pct
        self.stream.flush()


def _num(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else "%.1f" % x


def _hms(s: float) -> str:
    s = int(round(s))
    if s >= 3600:
        return "%dh%02dm" % (s // 3600, s % 3600 // 60)
    if s >= 60:
        return "%dm%02ds" % (s // 60, s % 60)
    return "%ds" % s


# --- the run ---------------------------------------------------------------------------------

def run(batches: Iterable[Batch], work: Callable[[Any], Any],
        fold: Callable[[Any], None], out_dir: str | None, key: dict[str, Any],
        scheduler: str | None = None, workers: int | None = None, resume: bool = False,
        progress: TextIO | None = None,
        on_fold: Callable[[Outcome], None] | None = None) -> Outcome:
    """Run every batch not already in the checkpoint; fold each partial as it arrives
    (then `on_fold(outcome so far)`, e.g. for an interim report)."""
    plan = list(batches)
    total_cost = sum(b.cost for b in plan)
    total_days = sum(b.pump_days for b in plan)
    out = Outcome()
    ck_path = os.path.join(out_dir, CHECKPOINT) if out_dir is not None else None
    done_ids: set[int] = set()
    cost_done = 0.0
    by_id = {b.id: b for b in plan}
    walls: dict[str, float] = {}          # earlier invocations: their last elapsed time
    if resume and ck_path is not None:
        for rec in read_checkpoint(ck_path, key):
            inv = str(rec.get("inv", ""))
            walls[inv] = max(walls.get(inv, 0.0), float(rec.get("elapsed_s", 0.0)))
            bid = rec["batch"]
            if bid in done_ids or bid not in by_id:
                continue
            done_ids.add(bid)
            fold(rec["partial"])
            out.batches += 1
            out.resumed += 1
            out.cpu_s += float(rec.get("cpu_s", 0.0))
            out.pump_days += by_id[bid].pump_days
            cost_done += by_id[bid].cost
    todo = [b for b in plan if b.id not in done_ids]
    ck = _Checkpoint(ck_path, key, append=resume) if ck_path is not None else None
    bar = Progress(progress, len(plan), total_cost, total_days)
    bar.start(cost_done, out.pump_days)
    t0 = time.perf_counter()
    inv = "%x" % int(time.time() * 1000)
    earlier_wall = sum(walls.values())

    def take(b: Batch, res: dict[str, Any]) -> None:
        nonlocal cost_done
        fold(res["partial"])
        if ck is not None:
            ck.add(b.id, res, inv, time.perf_counter() - t0)
        out.batches += 1
        out.cpu_s += res["cpu_s"]
        out.cpu_s_now += res["cpu_s"]
        out.pump_days += b.pump_days
        out.pump_days_now += b.pump_days
        cost_done += b.cost
        out.wall_s = time.perf_counter() - t0
        out.wall_s_all = out.wall_s + earlier_wall
        bar.update(out.batches, cost_done, out.pump_days)
        if on_fold is not None:
            on_fold(out)

    try:
        if scheduler == IN_PROCESS:
            out.scheduler = "in-process"
            out.workers = 1
            for b in todo:
                take(b, timed(work, b.payload))
        else:
            _on_dask(todo, work, take, scheduler, workers, out)
    finally:
        if ck is not None:
            ck.close()
    out.wall_s = time.perf_counter() - t0
    out.wall_s_all = out.wall_s + sum(walls.values())
    bar.update(out.batches, cost_done, out.pump_days, final=True)
    return out


def _on_dask(todo: list[Batch], work: Callable[[Any], Any],
             take: Callable[[Batch, dict[str, Any]], None], scheduler: str | None,
             workers: int | None, out: Outcome) -> None:
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is None:
        n = workers or os.cpu_count() or 1
        # loopback only: the scheduler, the workers and their nannies on 127.0.0.1, no
        # dashboard, and the scheduler's own HTTP endpoint (health, metrics) there too
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               host=LOOPBACK, dashboard_address=None,
                               scheduler_kwargs={"dashboard_address": LOOPBACK + ":0"},
                               silence_logs=logging.ERROR)
        client = Client(cluster)
        out.scheduler = "LocalCluster on 127.0.0.1 (%d worker%s)" % (n, "s" if n > 1 else "")
    else:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError, ValueError) as e:
            raise CampaignError("--scheduler %s: cannot reach it (%s); is `dask scheduler` "
                                "running there?" % (scheduler, e)) from e
        out.scheduler = scheduler
    try:
        out.address = str(getattr(client.scheduler, "address", ""))
        n_workers = max(1, len(client.scheduler_info(n_workers=-1).get("workers", {})))
        out.workers = n_workers
        inflight = 2 * n_workers + 2
        queue = iter(todo)
        ac = as_completed()
        owner: dict[Any, Batch] = {}

        def submit() -> bool:
            b = next(queue, None)
            if b is None:
                return False
            fut = client.submit(timed, work, b.payload, pure=False)
            owner[fut.key] = b
            ac.add(fut)
            return True

        for _ in range(inflight):
            if not submit():
                break
        for fut in ac:
            b = owner.pop(fut.key)
            res = fut.result()
            fut.release()
            take(b, res)
            submit()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()

