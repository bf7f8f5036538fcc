"""Training progress a user can watch: loss, lr, tokens/s and ETA every few steps.

Rank 0 shows a run's progress on the console as one log line, named by the run, every
``interval_steps`` steps (and at the last step), which reads as well in a terminal as in files and
job logs; or, opted in with ``BARS``, as one live bar per run (steps, tokens, tokens/s and ETA,
moved every step). Either way, every ``interval_steps`` steps it appends one record to
``<run_dir>/metrics.jsonl``::

    {"step": 40, "loss": 5.91, "lr": 0.001, "grad_norm": 1.3, "tokens_per_s": 5123.0,
     "eta_s": 31.2, "elapsed_s": 9.9, "interval_steps": 10, "time": 1796300000.1}

``loss`` and ``grad_norm`` are means over the steps since the previous record; ``tokens_per_s``
is measured over the time those steps trained (checkpoint saves and the time between calls do not
count) and ``eta_s`` extrapolates it to the last step; ``elapsed_s`` is the wall time since this
process trained its first step. A resumed run first drops the records after its resume step
(``checkpoint.drop_records_after``), so each step has one record. The file holds wall-clock
figures: it is for watching a run, never a stage output that is hashed or compared
(``checkpoint.TRAIN_LOG`` is the deterministic record).

With ``tensorboard`` the same scalars go to TensorBoard events in ``<run_dir>/tensorboard/``
(``train/loss``, ``train/lr``, ``train/grad_norm``, ``train/tokens_per_s``), keyed by step, and
the probe stage adds each probed checkpoint's summary there (``write_probe_summary``): the mean
value of every metric per set and duplication level. The store's Parquet rows stay the source of
truth; TensorBoard is a view for watching.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

from taggant.pipeline.eval_format import CANONICAL

METRICS = "metrics.jsonl"
TENSORBOARD = "tensorboard"

log = logging.getLogger(__name__)


BARS = "TAGGANT_PROGRESS_BARS"
"""Environment variable: ``1`` shows progress as live bars, drawn by Ray's experimental
distributed tqdm; anything else, as log lines. The driver passes its own value to its Ray workers
(``jobs.runtime.ray_session``). Bars are opt-in: a bar's last states can reach the driver after
its stage has ended, and Ray's bars redraw under rich's status line."""


def bars() -> bool:
    """Whether this process shows progress as live bars (``BARS``)."""
    return os.environ.get(BARS) == "1"


def bar(desc: str, total: int, unit: str):
    """A progress bar with tqdm's ``n``, ``set_description`` and ``close``: Ray's distributed
    tqdm, so that in a Ray worker the driver draws it, one line per bar that Ray's log
    deduplication never merges (outside Ray it draws locally). It sends its state at most once a
    second, and at ``close``; ``advance`` moves it."""
    from ray.experimental import tqdm_ray

    return tqdm_ray.tqdm(desc=desc, total=total, unit=unit)


def advance(progress_bar, n: int, desc: str) -> None:
    """Move ``progress_bar`` to ``n`` with the description ``desc``."""
    progress_bar.n = n
    progress_bar.set_description(desc)
    # A Ray worker's bar state is a line on its stdout, which is block-buffered: send it now.
    sys.stdout.flush()


class ProbeProgress:
    """A run's probe watcher on the console: a bar up to the run's final step (``bars``), or one
    log line per probed checkpoint.

    Args:
        run: the run's name.
        final_step: the step of its last checkpoint.
    """

    def __init__(self, run: str, final_step: int):
        self.run, self.final_step = run, final_step
        self._bar = bar(f"probe {run}", final_step, "step") if bars() else None

    def probed(self, step: int, rows: int) -> None:
        """The checkpoint at ``step`` is in the store, with ``rows`` rows."""
        if self._bar is None:
            log.info("probe %s: step %d/%d probed, %d rows", self.run, step, self.final_step, rows)
            return
        advance(self._bar, step, f"probe {self.run} step {step}/{self.final_step}")
        if step == self.final_step:
            self._bar.close()


def read_metrics(run_dir: str) -> list[dict[str, Any]]:
    """The progress records of a run, in the order they were written."""
    with open(os.path.join(run_dir, METRICS)) as f:
        return [json.loads(line) for line in f]


def tensorboard_writer(run_dir: str):
    """A ``SummaryWriter`` on ``<run_dir>/tensorboard/``, or ``None`` (with a warning saying what
    to install) when the ``tensorboard`` package is missing: the run goes on without it."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        log.warning(
            "runs.tensorboard is on but TensorBoard cannot be loaded (%s); install it with "
            "`pip install 'taggant[tensorboard]'`. Progress goes to %s only.",
            e,
            METRICS,
        )
        return None
    return SummaryWriter(os.path.join(run_dir, TENSORBOARD))


def probe_summary(rows) -> dict[str, float]:
    """Mean ``value`` of one checkpoint's probe rows (``pipeline.store.PROBE_SCHEMA``) per set,
    duplication level, probe, metric and ``eval_format``, tagged
    ``probe/<set>/dup<level>/<probe>/<metric>`` (``dup0`` holds the controls) for the items' own
    texts and ``…/<metric>/<eval_format>`` for a variant or another format."""
    import pyarrow as pa

    keys = ["set", "dup_level", "probe", "metric", "eval_format"]
    means = pa.TableGroupBy(rows.select([*keys, "value"]), keys).aggregate([("value", "mean")])
    return {
        f"probe/{r['set']}/dup{r['dup_level']}/{r['probe']}/{r['metric']}"
        + ("" if r["eval_format"] == CANONICAL else f"/{r['eval_format']}"): r["value_mean"]
        for r in means.sort_by([(k, "ascending") for k in keys]).to_pylist()
    }


def write_probe_summary(run_dir: str, step: int, rows) -> None:
    """Add ``probe_summary(rows)`` at ``step`` to the run's TensorBoard events (their own file
    beside training's: the probe stage runs in another process)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        log.warning(
            "runs.tensorboard is on but TensorBoard cannot be loaded (%s); install it with "
            "`pip install 'taggant[tensorboard]'`. Probe rows are in the store only.",
            e,
        )
        return
    with SummaryWriter(os.path.join(run_dir, TENSORBOARD), filename_suffix=".probe") as writer:
        for tag, value in probe_summary(rows).items():
            writer.add_scalar(tag, value, step)


class Progress:
    """Progress records of one rank-0 training process (see the module docstring).

    Args:
        run_dir: the run folder.
        num_steps: the run's last step (for the ETA).
        tokens_per_step: tokens of one optimizer step (global batch × sequence length).
        interval_steps: steps between records.
        tensorboard: also write TensorBoard scalars.
    """

    def __init__(
        self,
        run_dir: str,
        num_steps: int,
        tokens_per_step: int,
        interval_steps: int,
        tensorboard: bool = False,
    ):
        self.run_dir, self.num_steps = run_dir, num_steps
        self.tokens_per_step, self.interval_steps = tokens_per_step, interval_steps
        self._writer = tensorboard_writer(run_dir) if tensorboard else None
        self._first_s: float | None = None
        self._step_start_s: float | None = None
        self._window: list[dict[str, Any]] = []
        self._window_s = 0.0
        self._bars = bars()
        self._bar = None  # made at the first step: a resumed run's bar starts where it resumed

    def start(self) -> None:
        """The next step starts now: call before the first step of a ``train_until`` call and
        after a checkpoint save, so that neither idle time nor saving counts as training."""
        self._step_start_s = time.perf_counter()
        if self._first_s is None:
            self._first_s = self._step_start_s

    def step_done(self, record: dict[str, Any]) -> dict[str, Any] | None:
        """Account one trained step (``step``, ``loss``, ``lr``, ``grad_norm`` as in the train
        log); returns the progress record when one is due, else ``None``."""
        assert self._step_start_s is not None, "call start() first"
        now = time.perf_counter()
        self._window_s += now - self._step_start_s
        self._step_start_s = now
        self._window.append(record)
        step = record["step"]
        if self._bars:
            self._move_bar(step)
        if step % self.interval_steps and step != self.num_steps:
            return None
        seconds = max(self._window_s, 1e-9)
        steps = len(self._window)
        norms = [r["grad_norm"] for r in self._window if r["grad_norm"] is not None]
        tokens_per_s = steps * self.tokens_per_step / seconds
        out = {
            "step": step,
            "loss": sum(r["loss"] for r in self._window) / steps,
            "lr": record["lr"],
            "grad_norm": sum(norms) / len(norms) if norms else None,
            "tokens_per_s": tokens_per_s,
            "eta_s": (self.num_steps - step) * seconds / steps,
            "elapsed_s": now - self._first_s,
            "interval_steps": steps,
            "time": time.time(),
        }
        self._emit(out)
        self._window, self._window_s = [], 0.0
        return out

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._bar is not None:
            self._bar.close()

    def _move_bar(self, step: int) -> None:
        name = os.path.basename(self.run_dir)
        if self._bar is None:
            self._bar = bar(f"train {name}", self.num_steps * self.tokens_per_step, "tok")
        advance(
            self._bar, step * self.tokens_per_step, f"train {name} step {step}/{self.num_steps}"
        )
        if step == self.num_steps:
            self._bar.close()  # sends the final state now: the rank may be idle for a while
            self._bar = None

    def _emit(self, out: dict[str, Any]) -> None:
        if not self._bars:
            log.info(
                "train %s: step %d/%d  loss %.4f  lr %.3g  %.0f tokens/s  ETA %s",
                os.path.basename(self.run_dir),
                out["step"],
                self.num_steps,
                out["loss"],
                out["lr"],
                out["tokens_per_s"],
                _duration(out["eta_s"]),
            )
        with open(os.path.join(self.run_dir, METRICS), "a") as f:
            f.write(json.dumps(out) + "\n")
        if self._writer is not None:
            for name in ("loss", "lr", "grad_norm", "tokens_per_s"):
                if out[name] is not None:
                    self._writer.add_scalar(f"train/{name}", out[name], out["step"])
            self._writer.flush()


def _duration(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}:{m:02d}:{s:02d}"
