"""Completing the drawing: starting and stopping a run, showing its pixels as they arrive,
making what it drew one undo step, and the candidates it leaves (framed in the strip while
the canvas shows one, adopted with a click). Hole-aware completion is a run of several
candidates of which one is kept.

Mixed into MainWindow, whose __init__ sets out what a run leaves (the drawing before it,
its start and result, its candidates), and whose `completion_ended` signal it emits once
the window has taken in a run's end.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Slot
from PySide6.QtWidgets import QMessageBox

from .device_choice import label_text

STOP_WAIT_MS = 5000  # the longest an edit waits for a running completion to stop


class CompletionControl:
    """Complete, Stop, the run's progress and end, and its candidates."""

    def _stop_completion_now(self) -> bool:
        """Stop a running completion and wait for it to end, so that what it sampled is an
        undo step of its own before anything else changes the picture (and a completion
        still waiting for the weights is called off). False if it would not stop in time."""
        self.complete_when_loaded = False
        if not self.runner.is_running() or self.runner.shutdown(STOP_WAIT_MS):
            return True
        self.statusBar().showMessage("The completion is still stopping; try again.", 4000)
        return False

    @Slot()
    def complete(self) -> None:
        drawing = self.canvas.drawing
        if self.loader.pending:
            self.complete_when_loaded = True
            self.statusBar().showMessage("Completing as soon as the model is loaded…")
            return
        if self.model is None or self.runner.is_running():
            return
        known = drawing.known_for_completion()
        if known.all():
            self.statusBar().showMessage(
                "Nothing to complete: the drawing reaches the bottom row. Erase what should "
                "be completed.", 5000)
            return
        self.before_completion = drawing.snapshot()
        # Nothing erased: the rows below the ink become unknown, in the same undo step.
        drawing.values[:, ~known] = 0
        drawing.known[:] = known
        self.completion_start = drawing.snapshot()
        self.canvas.update()
        self._forget_candidates()
        # Hole-aware: N candidates in one batch, then the one that fits the whole picture.
        rerank = self.options.rerank_for(drawing.known)
        self.run_candidates = rerank[0] if rerank else self.options.candidates
        try:
            self.runner.start(
                model=self.model, image=drawing.values.copy(), known=drawing.known.copy(),
                sampler=self.options.sampler, candidates=self.run_candidates,
                temperature=self.options.temperature, seed=self.options.seed,
                class_label=self.options.class_label, device=None,
                pixels_per_second=self.options.pixels_per_second,
                rank_method=rerank[1] if rerank else None)
        except (RuntimeError, ValueError) as error:
            drawing.restore(self.before_completion)
            self.before_completion = self.completion_start = None
            self.canvas.update()
            QMessageBox.critical(self, "Cannot complete", str(error))
            return
        self._reset_run_display()
        self.canvas.set_read_only(True)
        self.complete_action.setEnabled(False)
        self.stop_action.setEnabled(True)
        self._sync_history_actions()
        self.progress_label.setText(self._progress_text())
        self.statusBar().showMessage("Completing… Esc stops it, Ctrl+Z stops and undoes it.")

    @Slot()
    def stop(self) -> None:
        if self.runner.is_running():
            self.runner.stop()

    @Slot(object)
    def _samples_arrived(self, samples: list) -> None:
        drawing = self.canvas.drawing
        last = None
        for s in samples:
            if s.candidate == 0:
                drawing.values[s.channel, s.row, s.col] = s.value
                drawing.known[s.row, s.col] = True  # shown as it is drawn, R then G then B
                last = s
        if last is not None:
            self.canvas.set_cursor_position(last.row, last.col)
            self.insight.show_distribution(last.probs, last.value, last.row, last.col,
                                           last.channel, drawing.channels)
        if self.run_candidates > 1:  # they animate side by side; the canvas shows the first
            self.gallery.show_candidates(self.runner.images, drawing.levels,
                                         classes=self.runner.class_labels, on_canvas=0)
        self.progress_label.setText(self._progress_text())
        self.device_label.setText(label_text(self.device_choice, self.runner.device_name))
        self.canvas.update()

    def _progress_text(self, finished: bool = False) -> str:
        """Pixels, not samples (a colour pixel is three, each candidate's one more): during
        the run with the recent speed, at its end with the time it took in all (an instant
        run is over before any speed can be measured)."""
        runner = self.runner
        text = f"{runner.pixels_done}/{runner.pixels_total} px"
        if self.run_candidates > 1:
            text += f" × {self.run_candidates} candidates"
        if finished:
            seconds = runner.elapsed
            text += f" in {seconds:.2f} s"
            if seconds > 0 and runner.pixels_done:
                text += f" ({runner.pixels_done / seconds:.0f} px/s)"
        elif runner.measured_pixels_per_second > 0:
            text += f" · {runner.measured_pixels_per_second:.0f} px/s"
        return text

    @Slot(str)
    def _completion_fell_back(self, message: str) -> None:
        """The GPU failed: the completion starts over on the CPU, from the picture as it was."""
        if self.before_completion is None:
            return
        drawing = self.canvas.drawing
        drawing.restore(self.completion_start)
        if self.run_candidates > 1:
            self.gallery.show_candidates(self.runner.images, drawing.levels, on_canvas=0)
        self.progress_label.setText(self._progress_text())
        self.device_label.setText(label_text(self.device_choice, self.runner.device_name))
        self.statusBar().showMessage(message)
        self.canvas.update()

    @Slot(bool)
    def _completion_finished(self, stopped: bool) -> None:
        if self.before_completion is None:  # not a run this window started (or already ended)
            return
        drawing = self.canvas.drawing
        images = self.runner.images
        ranked = self.runner.ranked
        classes = self.runner.class_labels
        as_class = (f" as a {classes[0]}" if len(classes) == 1 and classes[0] is not None
                    else "")
        message = ("Stopped; what was sampled is kept (Ctrl+Z undoes it)." if stopped
                   else f"Completed{as_class}.")
        if images is not None and len(images):
            chosen = 0 if ranked is None else ranked.index
            drawing.values[:] = images[chosen]
            # Not |=: a pixel whose R or G was shown but whose B was not drawn stays unknown.
            drawing.known[:] = self.completion_start[1] | self._sampled_mask()
            if self.run_candidates > 1:
                self.candidate_images, self.candidate_known = images, drawing.known.copy()
                self.candidate_classes = classes
                self.candidate_put = chosen
            if ranked is not None:
                self.chosen_candidate = chosen
                how = "the most likely" if ranked.method == "best" else "resampled"
                kept_class = ranked.class_labels[chosen] if ranked.class_labels else None
                how += "" if kept_class is None else f", class {kept_class}"
                message = (f"Completed, hole-aware: kept candidate {chosen + 1} of "
                           f"{len(images)} ({how}; log p of the whole picture "
                           f"{ranked.image_loglik[chosen]:.1f} nats).")
        if self.runner.fallback_reason is not None:
            message += f" On the CPU: {self.runner.fallback_reason}."
        if drawing.known.sum() > self.completion_start[1].sum():
            self.last_completion = (self.completion_start, drawing.snapshot())
        self._keep_run_display = True  # its own step: what the run showed stays in view
        try:
            self.canvas.push_edit(self.before_completion,
                                  "Stopped completion" if stopped else "Completion")
        finally:
            self._keep_run_display = False
        self.before_completion = self.completion_start = None
        self._end_completion(message)
        self.progress_label.setText(self._progress_text(finished=True))
        self.completion_ended.emit()

    def _sampled_mask(self) -> np.ndarray:
        """Pixels the completion wrote: unknown before, and reached in raster order."""
        before_known = self.completion_start[1]
        unknown = np.flatnonzero(~before_known.ravel())[:self.runner.pixels_done]
        mask = np.zeros(before_known.size, bool)
        mask[unknown] = True
        return mask.reshape(before_known.shape)

    @Slot(str)
    def _completion_failed(self, message: str) -> None:
        if self.before_completion is None:
            return
        self.canvas.drawing.restore(self.before_completion)
        self.before_completion = self.completion_start = None
        self._end_completion("Completion failed.")
        self._reset_run_display()
        QMessageBox.critical(self, "Completion failed", message)
        self.completion_ended.emit()

    def _end_completion(self, message: str) -> None:
        self.canvas.set_read_only(False)
        self.canvas.clear_cursor_position()
        self.complete_action.setEnabled(True)
        self.stop_action.setEnabled(False)
        self._sync_history_actions()
        self._sync_candidates()
        self.statusBar().showMessage(message, 6000)
        self.canvas.update()
        self.refresh_surprise()

    # -- candidates ---------------------------------------------------------------------

    @Slot(int)
    def adopt_candidate(self, k: int) -> None:
        """Put candidate k on the canvas, while it shows one of them (else the strip is
        empty: the candidates belong to a picture that has moved on)."""
        images = self.candidate_images
        if (images is None or self.runner.is_running() or not 0 <= k < len(images)
                or self.candidate_on_canvas() is None):
            return
        drawing = self.canvas.drawing
        before = drawing.snapshot()
        drawing.restore((images[k], self.candidate_known))
        self.candidate_put = k
        self.canvas.push_edit(before, f"Adopt candidate {k + 1}")
        self._sync_candidates()  # framed even when it is the same picture (no step then)

    def candidate_on_canvas(self) -> int | None:
        """The candidate the canvas shows, or None. Of several alike, the one last put there
        (kept or adopted), else the first."""
        images, drawing = self.candidate_images, self.canvas.drawing
        if images is None or not np.array_equal(self.candidate_known, drawing.known):
            return None
        matches = np.flatnonzero((images == drawing.values[None]).all(axis=(1, 2, 3)))
        if self.candidate_put in matches:
            return self.candidate_put
        return int(matches[0]) if len(matches) else None

    def _sync_candidates(self) -> None:
        """The strip holds the candidates while the canvas shows one of them (framed), and
        nothing once the picture is anything else: an edit, an undo past the completion."""
        if self.runner.is_running():
            return
        k = self.candidate_on_canvas()
        if k is None:
            self.gallery.clear()
        else:
            self.gallery.show_candidates(self.candidate_images, self.canvas.drawing.levels,
                                         chosen=self.chosen_candidate,
                                         classes=self.candidate_classes, on_canvas=k)

    def _forget_candidates(self) -> None:
        self.candidate_images = self.candidate_known = None
        self.candidate_classes = ()
        self.chosen_candidate = self.candidate_put = None
        self.gallery.clear()

    def _reset_run_display(self) -> None:
        """The status bar's count and the Insight panel describe a completion on the canvas;
        once the picture has moved on (an edit, an undo, a new picture or model) they go."""
        self.progress_label.clear()
        self.insight.clear()
