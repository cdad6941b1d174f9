"""What every benchmark shares: the machine it ran on, child processes measured one at a
time (wall time, peak RSS, CPU), a rich table on the terminal and a section appended to
docs/benchmarks.md.

Each side of a comparison runs as its own child process, so its peak RSS is its own: the
child is started through bench/launch.py (see there why), and its descendants are sampled
too, for the peak of a parent and its step child in memory at once.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "benchmarks.md"
LAUNCHER = REPO / "bench" / "launch.py"
MiB = 1024 * 1024
GiB = 1024 * MiB

DOC_HEADER = """# Benchmarks

Each benchmark compares the project against what a user would otherwise pick, side by side
in the same run: the machine below is shared and noisy, so the ratios are the figures to
trust, not the absolute times. Every section says where, when and with which command it was
measured; a new run appends a new section.

    make bench                      # the quick ones: python -m bench.all --quick
    python -m bench.<name> [--quick]   # one: dedupe, pack_scale, train_throughput, grpo_step,
                                       # distributed, quant_scoring, controller_scale, eval_cache, step_cache, store
"""


# --- the machine ---------------------------------------------------------------------------------


def _proc_field(path: str, name: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == name:
                return value.strip()
    except OSError:
        pass
    return None


@dataclass(frozen=True)
class Machine:
    cpu: str
    cores: int
    ram_gib: float
    load: float  # 1-minute load average when the benchmark started
    gpu: bool

    def describe(self) -> str:
        gpu = "an NVIDIA GPU present (unused: every figure here is CPU)" if self.gpu else "no GPU"
        return f"{self.cpu}, {self.cores} cores, {self.ram_gib:.1f} GiB RAM, load {self.load:.2f}, {gpu}"


def machine() -> Machine:
    cpu = _proc_field("/proc/cpuinfo", "model name") or platform.processor() or "unknown CPU"
    mem_kb = _proc_field("/proc/meminfo", "MemTotal") or "0 kB"
    return Machine(
        cpu=cpu,
        cores=os.cpu_count() or 1,
        ram_gib=int(mem_kb.split()[0]) / (1024 * 1024),
        load=os.getloadavg()[0],
        gpu=Path("/dev/nvidia0").exists(),
    )


# --- child processes -----------------------------------------------------------------------------


@dataclass
class Child:
    argv: list[str]
    returncode: int
    wall: float  # seconds
    peak_rss: int  # bytes
    cpu: float  # user + system seconds
    stdout: str
    stderr: str

    def result(self) -> dict[str, Any]:
        """The JSON object a benchmark child prints as its last stdout line."""
        if self.returncode != 0:
            raise RuntimeError(
                f"{shlex.join(self.argv)} exited with {self.returncode}:\n{self.stderr[-3000:]}"
            )
        for line in reversed(self.stdout.splitlines()):
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError(f"{shlex.join(self.argv)} printed no JSON result:\n{self.stdout[-2000:]}")


def python_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a benchmark child: this repository importable, offline, unbuffered."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("WANDB_MODE", "disabled")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def hwm(pid: int | str = "self") -> int:
    """Peak RSS in bytes of a live process (VmHWM); 0 when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    _, found, rest = status.partition("VmHWM:")  # absent for a zombie
    return int(rest.split()[0]) * 1024 if found else 0


class TreeSampler:
    """Samples a process and its descendants every `every` seconds: the largest VmHWM of
    any of them and the largest sum of their current RSS."""

    def __init__(self, pid: int, every: float = 0.1, include_root: bool = True):
        import psutil

        self.root = psutil.Process(pid)
        self.include_root = include_root
        self.every = every
        self.peak_single = 0
        self.peak_tree = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def sample(self) -> None:
        import psutil

        try:
            procs = [self.root] * self.include_root + self.root.children(recursive=True)
        except psutil.Error:
            return
        total = 0
        for proc in procs:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
            self.peak_single = max(self.peak_single, hwm(proc.pid))
        self.peak_tree = max(self.peak_tree, total)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak_single, self.peak_tree)


def run_child(
    argv: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float | None = None
) -> Child:
    """Run a process to its end and measure it alone: wall time, peak RSS (the larger of its
    own high-water mark and the sampled sum over it and its descendants), CPU (user + system,
    its descendants included)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.TemporaryDirectory() as tmp:
        usage_file = Path(tmp) / "usage.json"
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, str(LAUNCHER), str(usage_file), *argv],
            stdout=out, stderr=err, env=env or python_env(), cwd=cwd, start_new_session=True,
        )
        sampler = TreeSampler(proc.pid, include_root=False)  # the launcher is not the command
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        finally:
            sampled = sampler.stop()
        wall = time.perf_counter() - started
        usage = json.loads(usage_file.read_text()) if usage_file.exists() else {"maxrss": 0, "cpu": 0.0}
        out.seek(0)
        err.seek(0)
        return Child(
            argv=list(argv),
            returncode=proc.returncode,
            wall=wall,
            peak_rss=max(usage["maxrss"], sampled),
            cpu=usage["cpu"],
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
        )


def run_python(module: str, *args: str, env: dict[str, str] | None = None, **kw: Any) -> Child:
    return run_child([sys.executable, "-m", module, *args], env=env or python_env(), **kw)


def self_peak_rss() -> int:
    """This process's peak RSS in bytes (what a child reports about itself)."""
    return hwm("self")


def cpu_seconds() -> float:
    """This process's CPU time so far (user + system): steadier than wall time on a shared machine."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def emit_result(result: dict[str, Any]) -> None:
    """A child's answer to its parent: one JSON line on stdout."""
    print(json.dumps(result), flush=True)


# --- the report ----------------------------------------------------------------------------------


@dataclass
class Goal:
    what: str
    target: str
    measured: str
    met: bool

    def line(self) -> str:
        return f"{self.what}: goal {self.target}, measured {self.measured}: {'met' if self.met else 'MISSED'}"


@dataclass
class Section:
    title: str
    columns: list[str]
    rows: list[list[Any]]
    meaning: str  # what the figures say, in a sentence or a few
    goals: list[Goal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def fmt_s(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds:.3f} s" if seconds < 1 else f"{seconds:.1f} s" if seconds < 100 else f"{seconds:.0f} s"


def fmt_mib(n: float) -> str:
    return f"{n / MiB:.0f} MiB"


def fmt_x(ratio: float) -> str:
    return f"{ratio:.1f}x" if ratio < 100 else f"{ratio:.0f}x"


def _markdown(section: Section, command: str, when: str, where: Machine) -> str:
    head = f"| {' | '.join(section.columns)} |\n|{'---|' * len(section.columns)}\n"
    body = "".join(f"| {' | '.join(str(c) for c in row)} |\n" for row in section.rows)
    parts = [
        f"\n## {section.title}\n",
        f"Measured {when} on {where.describe()}, with `{command}`.\n",
        head + body,
        section.meaning + "\n",
    ]
    if section.goals:
        parts.append("".join(f"- {g.line()}\n" for g in section.goals))
    if section.notes:
        parts.append("\n".join(section.notes) + "\n")
    return "\n".join(parts)


def publish(section: Section, command: str, doc: Path | None, where: Machine | None = None) -> str:
    """Print the section as a rich table and append it to `doc` (None: print only)."""
    from rich.console import Console
    from rich.table import Table

    where = where or machine()
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    table = Table(title=section.title)
    for column in section.columns:
        table.add_column(column)
    for row in section.rows:
        table.add_row(*(str(c) for c in row))
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(table)
    for goal in section.goals:
        console.print(goal.line(), style="green" if goal.met else "bold red", markup=False)
    console.print(section.meaning, markup=False)
    for note in section.notes:
        console.print(note, markup=False)
    text = _markdown(section, command, when, where)
    if doc is not None:
        doc.parent.mkdir(parents=True, exist_ok=True)
        if not doc.exists() or not doc.read_text().strip():
            doc.write_text(DOC_HEADER)
        with open(doc, "a", encoding="utf-8") as f:
            f.write(text)
    return text


def add_common_args(parser: Any) -> None:
    parser.add_argument("--quick", action="store_true", help="smaller sizes (what make bench runs)")
    parser.add_argument(
        "--doc", type=Path, default=DOC, help=f"markdown file to append the figures to (default {DOC})"
    )
    parser.add_argument("--no-doc", action="store_true", help="print only")


def doc_path(args: Any) -> Path | None:
    return None if args.no_doc else args.doc


def command_line(module: str, argv: Sequence[str]) -> str:
    shown = [a for a in argv if a != "--no-doc"]
    if "--doc" in shown:  # where the figures went is not part of how to measure them
        i = shown.index("--doc")
        del shown[i : i + 2]
    return shlex.join(["python", "-m", module, *shown])
