"""A table measured cell by cell, for a machine lent for minutes: each cell has its own time limit,
is printed as it ends, and a hang leaves every thread's stack in the log instead of a silent kill.

A cell is one measurement (a function) that fills one or more columns of a row. Three guards:
- at its limit, SIGALRM: every thread's stack is dumped, the cell reads "timeout" and the table goes
  on (the handler raises in the main thread, which interrupts any wait Python can interrupt);
- GRACE seconds later, if the main thread is still stuck where Python cannot interrupt it (a C call
  that released the GIL, e.g. waiting on a device): a watchdog thread dumps the stacks again, prints
  the table so far and ends the process (exit code 3);
- 2 x GRACE later (the GIL held too): faulthandler dumps the stacks and ends the process.
SIGTERM (``timeout`` ending the run): faulthandler dumps every thread's stack at once, then the
watchdog prints the table so far and ends the process (exit code 143), wherever the main thread is.
"""
import contextlib
import faulthandler
import os
import select
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Union

GRACE = 20.0  # seconds past a cell's limit before the main thread is given up on
MIN_CELL_SECONDS = 10.0  # a cell does not start with less of the budget left
STUCK, TERMINATED = 3, 128 + signal.SIGTERM  # exit codes

LEGEND = ("n/a: does not apply here (the reason follows); skipped: the time budget (--budget) was spent "
          "before the cell could start; timeout: the cell passed its limit (every thread's stack is in the log); "
          "error: the cell failed (its first line); not run: the check was stopped before it")

Value = Union[float, int, str]


class NotApplicable(Exception):
    """The cell does not apply on this machine or with these settings; the message says why."""


class CellTimeout(BaseException):
    """Raised in the main thread at a cell's limit (a BaseException: no ``except Exception`` of the
    measured code keeps it from ending the cell). ``note``: what the cell measured until then."""

    note = ""


def formatted(value: Value) -> str:
    """A figure with three significant digits or so: 1551, 96.2, 2.10, 3.6e-03."""
    if isinstance(value, str):
        return value
    if value != 0 and abs(value) < 0.01:
        return f"{value:.1e}"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def one_line(error: BaseException) -> str:
    line = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {line}" if line else type(error).__name__


def planted_hang() -> None:
    """--plant-hang: waits for ever, as a feed whose decoding processes stopped answering would."""
    threading.Event().wait()


@dataclass
class Running:
    """The cell being measured."""

    name: str
    cells: list[tuple[str, str]]
    deadline: float


class Table:
    def __init__(self, rows: Sequence[str], columns: Sequence[str], budget_s: float, cell_s: float,
                 limits: Optional[dict[str, float]] = None, plant_failure: str = "", plant_hang: str = ""):
        """``limits``: a column's own limit instead of ``cell_s``; ``plant_failure``/``plant_hang``: the
        column whose cell fails / hangs, to show what the table does then."""
        self.rows, self.columns = list(rows), list(columns)
        self.end = time.monotonic() + budget_s
        self.cell_s, self.limits = cell_s, limits or {}
        self.plant_failure, self.plant_hang = plant_failure, plant_hang
        self.cells: dict[tuple[str, str], str] = {}
        self.numbers: dict[tuple[str, str], float] = {}
        self.running: Optional[Running] = None
        self.printing = threading.Lock()
        self.guarded = False  # no time limits before guard(): an alarm without its handler ends the process

    def left(self) -> float:
        return self.end - time.monotonic()

    def measure(self, row: str, columns: Union[str, Sequence[str]], work: Callable[[], object]) -> None:
        """Runs ``work()`` for ``columns`` of ``row``: it returns a value per column (one value for one
        column); the cell's outcome (n/a, skipped, timeout, error) fills each of them otherwise."""
        columns = [columns] if isinstance(columns, str) else list(columns)
        if self.left() < MIN_CELL_SECONDS:
            return self._record(row, columns, ["skipped"] * len(columns))
        limit = min(min(self.limits.get(c, self.cell_s) for c in columns), self.left())
        try:
            with self._limited(Running(f"{row}: {', '.join(columns)}", [(row, c) for c in columns],
                                       time.monotonic() + limit)):
                if self.plant_failure in columns:
                    raise RuntimeError(f"a failure planted in {self.plant_failure} (--plant-failure)")
                if self.plant_hang in columns:
                    planted_hang()
                values = work()
        except NotApplicable as reason:
            texts = [f"n/a: {reason}"] * len(columns)
        except CellTimeout as timeout:
            texts = [f"timeout after {limit:.0f} s" + (f" ({timeout.note})" if timeout.note else "")] * len(columns)
        except Exception as error:  # noqa: BLE001  one cell's failure is that cell's
            texts = [f"error: {one_line(error)}"[:160]] * len(columns)
        else:
            values = list(values) if len(columns) > 1 else [values]
            for column, value in zip(columns, values):
                if isinstance(value, (int, float)):
                    self.numbers[row, column] = float(value)
            texts = [formatted(value) for value in values]
        self._record(row, columns, texts)

    def number(self, row: str, column: str) -> Optional[float]:
        return self.numbers.get((row, column))

    def _record(self, row: str, columns: list[str], texts: list[str]) -> None:
        with self.printing:
            for column, text in zip(columns, texts):
                self.cells[row, column] = text
                print(f"{row}: {column} = {text}", flush=True)

    @contextlib.contextmanager
    def _limited(self, running: Running):
        self.running = running
        limit = running.deadline - time.monotonic()
        if self.guarded:
            faulthandler.dump_traceback_later(limit + 2 * GRACE, exit=True)
            signal.setitimer(signal.ITIMER_REAL, max(limit, 0.001))
        try:
            yield
        finally:
            if self.guarded:
                signal.setitimer(signal.ITIMER_REAL, 0)
                faulthandler.cancel_dump_traceback_later()
            self.running = None

    def lines(self) -> list[str]:
        """The table in Markdown, then its legend."""
        lines = ["| feature_type | " + " | ".join(self.columns) + " |", "|" + "---|" * (len(self.columns) + 1)]
        for row in self.rows:
            cells = (self.cells.get((row, column), "not run") for column in self.columns)
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        return lines + ["", LEGEND]

    def print(self) -> None:
        with self.printing:
            print("\n" + "\n".join(self.lines()), flush=True)

    def guard(self) -> None:
        """Installs the guards of the module's docstring (from the main thread, once)."""
        signal.signal(signal.SIGALRM, self._on_alarm)
        signal.signal(signal.SIGTERM, lambda *_: None)  # Python's handler writes to the wakeup fd
        reader, writer = os.pipe()
        os.set_blocking(writer, False)
        signal.set_wakeup_fd(writer, warn_on_full_buffer=False)
        faulthandler.register(signal.SIGTERM, file=sys.stderr, all_threads=True, chain=True)
        threading.Thread(target=self._watch, args=(reader,), name="cell watchdog", daemon=True).start()
        self.guarded = True

    def _on_alarm(self, signum, frame) -> None:
        running = self.running
        if running is None:
            return  # the cell ended as the alarm rang
        print(f"\n{running.name}: past its limit; every thread's stack:", file=sys.stderr, flush=True)
        faulthandler.dump_traceback(sys.stderr, all_threads=True)
        raise CellTimeout()

    def _watch(self, reader: int) -> None:
        while True:
            ready, _, _ = select.select([reader], [], [], 1.0)
            if ready and signal.SIGTERM in os.read(reader, 64):
                # faulthandler has dumped the stacks already, from the signal itself
                self._give_up("terminated (SIGTERM)", "terminated", TERMINATED, dump=False)
            running = self.running
            if running is not None and time.monotonic() > running.deadline + GRACE:
                self._give_up(f"{running.name}: stuck past its limit where Python cannot interrupt it",
                              "stuck past its limit", STUCK, dump=True)

    def _give_up(self, why: str, text: str, code: int, dump: bool) -> None:
        """Ends the process from the watchdog: the stacks, the running cell as ``text``, the table so far."""
        print(f"\n{why}" + ("; every thread's stack:" if dump else ""), file=sys.stderr, flush=True)
        if dump:
            faulthandler.dump_traceback(sys.stderr, all_threads=True)
        self.printing.acquire(timeout=5)  # not for ever: the main thread may be stuck holding it
        running = self.running
        if running is not None:
            for row, column in running.cells:
                self.cells[row, column] = text
        print("\n" + "\n".join(self.lines()), flush=True)
        sys.stderr.flush()
        os._exit(code)
