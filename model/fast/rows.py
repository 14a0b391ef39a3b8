"""The stream of samples of the gated model: rows in raster order, shared until the candidates
differ, then in chunks of candidates that whichever thread is free takes."""

from __future__ import annotations

import contextlib
import threading
from collections import defaultdict
from collections.abc import Iterator
from itertools import repeat
from operator import itemgetter, setitem

import numpy as np

from ..task import PixelSample, SamplingTask
from . import threads, tiles
from .arrays import NumpyArrays
from .stepper import GatedStepper, RowJob


def _gated_steps(stepper: GatedStepper, task: SamplingTask) -> Iterator[PixelSample]:
    if stepper.compiled is not None:  # no BLAS: every product is in the compiled kernels
        yield from _gated_rows_in_order(stepper, task)
        return
    # For the whole completion (the limit is the process's, shared with any completion
    # running at the same time; it ends when the last of them does).
    on_cpu = isinstance(stepper.arrays, NumpyArrays)
    with threads.single_threaded_blas() if on_cpu else contextlib.nullcontext():
        yield from _gated_steps_in_order(stepper, task)


def _unknown_columns(task: SamplingTask) -> dict[int, list[int]]:
    """Each row with unknown pixels, in order, with its unknown columns, in order."""
    unknown_columns = defaultdict(list)
    for row, col in task.unknown:
        unknown_columns[row].append(col)
    return unknown_columns


# PixelSample(...) without the named tuple's Python-level __new__.
_new_sample = tuple.__new__
_second = itemgetter(1)


def _gated_rows_in_order(stepper: GatedStepper, task: SamplingTask) -> Iterator[PixelSample]:
    """The compiled path: a row's values are drawn by kernel calls, then streamed. While
    the candidates share one state a row may take several calls (one more each time they
    split); after that each row is one job, run in chunks (_rows_by_chunks).

    Stopping the stream between two values leaves the rest of that row's work (and at
    most the next row's) done for nothing, but nothing of it is seen:
    `task.images` gets each candidate's value as its sample is handed out. A run's samples
    are made and handed out by iterators built per run, with no line of Python per value or
    sample (9 candidates of a 28x28 image: 7,056 samples)."""
    channels, candidates = task.config.channels, task.candidates
    _, _, height, width = task.images.shape
    images = task.images.view()
    images.shape = (-1,)  # flat, and never a copy (this raises where it would have to be)
    image_starts = np.arange(candidates) * images.size // candidates
    candidate_numbers = np.tile(np.arange(candidates), width * channels)

    def stream(row, order, values, probs):
        """The samples of pixel-channels `order` ((col, channel) pairs) of `row`, value by
        value and within a value candidate by candidate, each candidate's value written to
        the images just before its sample; and the values in that order."""
        drawn = len(order)
        cols, chans = order.T
        run_values = values[:, cols, chans].T.ravel().tolist()
        run_probs = probs[:, cols, chans].transpose(1, 0, 2).reshape(drawn * candidates, -1)
        samples = map(_new_sample, repeat(PixelSample), zip(
            candidate_numbers[:drawn * candidates].tolist(), repeat(row),
            cols.repeat(candidates).tolist(), chans.repeat(candidates).tolist(),
            run_values, run_probs))
        places = ((chans * height + row) * width + cols)[:, None] + image_starts
        writes = map(setitem, repeat(images), places.ravel().tolist(), run_values)
        return map(_second, zip(writes, samples, strict=True)), run_values

    rows = [(row, columns, np.array([(col, channel) for col in columns
                                     for channel in range(channels)]))
            for row, columns in _unknown_columns(task).items()]
    for index, (row, columns, order) in enumerate(rows):
        if not stepper.shared:
            yield from _rows_by_chunks(stepper, rows[index:], stream)
            return
        stepper.begin_row(row)
        done = 0
        start = (0, 0)  # the kernel gives the known columns on the way their stack only
        while done < len(order):
            values, probs, drawn = stepper.sample_run(row, *start, columns[-1])
            samples, run_values = stream(row, order[done:done + drawn], values, probs)
            yield from samples
            done += drawn
            col, channel = order[done - 1].tolist()
            if stepper.shared and len(set(run_values[-candidates:])) > 1:
                stepper.write(col, channel, values[:, col, channel])  # they split here
            # Where the next run starts: after the last value drawn (known columns on the
            # way get their horizontal stack in the kernel).
            start = (col, channel + 1) if channel + 1 < channels else (col + 1, 0)


def _chunks(batch: int) -> list[tuple[int, int]]:
    """The candidate states' chunks for whole-row jobs: the kernels' groups (each weight
    loaded once for the group; 9 candidates: 4 and 5, see tiles.group_size), or one share
    per core where there are fewer groups than that (2 candidates on two cores: 1 and 1)."""
    groups, first = [], 0
    while first < batch:
        groups.append((first, first + tiles.group_size(batch - first)))
        first = groups[-1][1]
    if len(groups) >= min(batch, threads.cores()):
        return groups
    return threads._share_bounds(batch)


def _rows_by_chunks(stepper: GatedStepper, rows, stream) -> Iterator[PixelSample]:
    """Rows once every candidate has its own state: each row a job (RowJob) run chunk
    by chunk (_chunks), the chunks of a row on the calling thread and the helper threads at
    once (_RowsAhead). The calling thread also streams each row once all its chunks are
    done, while the helpers go on with the next: the stream, all Python, costs no core's
    compute, and whichever thread is free takes the next chunk, so a core that runs slower
    for a while (this machine's do) gets less of the work."""
    jobs = [stepper.start_row(row, columns[-1]) for row, columns, _ in rows]
    chunks = _chunks(stepper.batch)
    if len(chunks) == 1 or threads.cores() == 1:  # all on this thread, no rows handed over
        for (row, _, order), job in zip(rows, jobs, strict=True):
            for chunk in chunks:
                job(*chunk)
            yield from stream(row, order, job.values, job.probs)[0]
        return
    ahead = _RowsAhead(jobs, chunks)
    try:
        for index, (row, _, order) in enumerate(rows):
            ahead.finish_row(index)
            yield from stream(row, order, jobs[index].values, jobs[index].probs)[0]
            ahead.streamed(index + 1)
    finally:  # the arrays must not change under a helper still at work
        ahead.stop()


class _RowsAhead:
    """Chunks of the candidates taken through a completion's rows by the calling thread and
    helper threads. A chunk's rows are computed in order, one thread at a time; no row
    starts before the one LEAD rows above it has been streamed, so nothing runs more than
    one row past the row streaming (stopping the stream wastes at most that). A helper's
    task never waits: with nothing to take it ends, and the calling thread starts another
    when there is (the helper threads serve every completion running)."""

    LEAD = 2

    def __init__(self, jobs: list[RowJob], chunks: list[tuple[int, int]]):
        self.jobs, self.chunks = jobs, chunks
        self.changed = threading.Condition()
        self.next_row = [0] * len(chunks)  # per chunk, the next row (index into jobs) to do
        self.busy = [False] * len(chunks)
        self.rows_streamed = 0
        self.helpers = threads.cores() - 1
        self.running = 0  # helper tasks started and not yet ended
        self.error = None
        self.stopped = False
        with self.changed:
            self._start_helpers()

    def _available(self) -> list[int]:
        """The chunks whose next row may start now (lowest row first)."""
        limit = min(self.rows_streamed + self.LEAD, len(self.jobs))
        free = [c for c, row in enumerate(self.next_row) if not self.busy[c] and row < limit]
        return sorted(free, key=self.next_row.__getitem__)

    def _start_helpers(self) -> None:  # with self.changed held
        wanted = min(self.helpers, len(self._available()))
        while self.running < wanted and not self.stopped:
            self.running += 1
            threads._helper_threads().submit(self._help)

    def _take(self) -> int | None:  # with self.changed held
        available = self._available()
        if not available:
            return None
        self.busy[available[0]] = True
        return available[0]

    def _run(self, chunk: int) -> None:
        """Chunk `chunk`'s next row (taken with _take); counted done afterwards."""
        try:
            self.jobs[self.next_row[chunk]](*self.chunks[chunk])
        except BaseException as error:
            with self.changed:
                self.busy[chunk] = False
                self.error = self.error or error
                self.changed.notify_all()
            raise
        with self.changed:
            self.next_row[chunk] += 1
            self.busy[chunk] = False
            self.changed.notify_all()

    def _help(self) -> None:
        try:
            while True:
                with self.changed:
                    chunk = None if self.stopped or self.error else self._take()
                    if chunk is None:
                        return
                try:
                    self._run(chunk)
                except BaseException:  # handed to the calling thread (self.error)
                    return
        finally:
            with self.changed:
                self.running -= 1
                self.changed.notify_all()

    def finish_row(self, index: int) -> None:
        """Until every chunk has done row `index`, taking chunks on this thread meanwhile;
        re-raises a helper's error."""
        while True:
            with self.changed:
                if self.error is not None:
                    raise self.error
                if min(self.next_row) > index:
                    return
                chunk = self._take()
                if chunk is None:  # the rest of the row is at work on the helpers
                    self.changed.wait()
                    continue
            self._run(chunk)
            with self.changed:
                self._start_helpers()

    def streamed(self, rows: int) -> None:
        with self.changed:
            self.rows_streamed = rows
            self._start_helpers()

    def stop(self) -> None:
        """No more rows; returns once every helper task has ended."""
        with self.changed:
            self.stopped = True
            self.changed.wait_for(lambda: self.running == 0)


def _gated_steps_in_order(stepper: GatedStepper, task: SamplingTask) -> Iterator[PixelSample]:
    for row, columns in _unknown_columns(task).items():
        stepper.begin_row(row)
        computed = 0  # columns of this row whose horizontal stack is up to date
        for col in columns:
            if col > computed:  # known pixels since the last sample, batched
                stepper.horizontal(computed, col - 1)
            for channel in range(task.config.channels):
                # G and B see the values just drawn for this pixel: the column is redone.
                samples = task.sample(row, col, channel, stepper.column_logits(col, channel))
                stepper.write(col, channel, task.images[:, channel, row, col])
                yield from samples
            computed = col + 1
