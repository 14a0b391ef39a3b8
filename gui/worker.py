"""Where gui/main_window.py imports `CompletionRunner` from: it lives in
gui/completion_runner.py, its worker in gui/completion_worker.py and what a device's failure
means in gui/device_failures.py. Once the window imports it from there, this module goes."""

from .completion_runner import CompletionRunner

__all__ = ["CompletionRunner"]
