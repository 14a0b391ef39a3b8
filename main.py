"""PixelCNN Studio: draw half a picture and watch a PixelCNN complete it."""

from __future__ import annotations

import argparse
import os
import sys
import time

STARTED = time.monotonic()  # fallback for systems without /proc

# `pixelcnn-studio COMMAND ...` (or `python main.py COMMAND ...`): the headless commands,
# each a module of model/ with a main(argv); none of them imports Qt.
COMMANDS = {
    "complete": ("model.cli", "complete pictures without the window"),
    "train": ("model.training.train", "train a model and write it with its card"),
    "train-all": ("model.training.train_all", "train every bundled model on one GPU"),
    "evaluate": ("model.training.evaluate", "a model's test NLL"),
    "bench": ("model.training.bench", "time the samplers, the posterior, the cores"),
    "showcase": ("model.training.showcase", "a sheet of a model's samples and completions"),
    "recognise": ("model.training.recognise", "how often completions are recognised as the digit"),
    "holes": ("model.training.holes", "hole-aware completion, measured"),
    "data": ("model.training.data", "MNIST: quantization error per level count, stroke widths"),
}


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="pixelcnn-studio", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands (each has its own --help):\n" + "\n".join(
            f"  {name:<10} {about}" for name, (_, about) in COMMANDS.items()))
    parser.add_argument("--model", help="a bundled model's name or a .safetensors path")
    parser.add_argument("--demo", action="store_true",
                        help="load a sample digit (a smiley for a colour model), erase its "
                             "bottom half and complete it")
    parser.add_argument("--screenshot", metavar="PATH",
                        help="save a PNG of the window when the completion ends")
    parser.add_argument("--quit-after", type=float, metavar="SECONDS",
                        help="close the window after this many seconds")
    parser.add_argument("--self-test", action="store_true",
                        help="complete a digit with every bundled model, show the window "
                             "and grab it; print 'self-test OK' and exit 0, else exit 1")
    parser.add_argument("--time-startup", action="store_true",
                        help="print how long the window took to appear and the model to "
                             "load, counted from the start of the process, then quit")
    return parser.parse_args(argv)


def seconds_since_process_start() -> float:
    """Wall time since this process started (Linux: from /proc, which also counts the
    interpreter's own start-up; elsewhere from this module's import)."""
    try:
        with open("/proc/self/stat") as stat:
            started_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as uptime:
            return float(uptime.read().split()[0]) - started_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.monotonic() - STARTED


def report_startup(app, window) -> None:
    """For --time-startup: one line when the window first paints, one when the model's
    weights are in, then quit."""
    from PySide6.QtCore import QEvent, QObject

    class FirstPaint(QObject):
        def eventFilter(self, watched, event):
            if event.type() == QEvent.Type.Paint:
                print(f"window shown after {seconds_since_process_start():.2f} s", flush=True)
                watched.removeEventFilter(self)
            return False

    painted = FirstPaint(window)
    window.installEventFilter(painted)

    def loaded(*_):
        print(f"model loaded after {seconds_since_process_start():.2f} s", flush=True)
        window.undo_stack.setClean()
        window.close()

    def failed(message):
        print(f"model failed to load: {message}", flush=True)
        app.exit(1)

    window.loader.loaded.connect(loaded)
    window.loader.failed.connect(failed)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] and argv[0] in COMMANDS:  # no Qt is imported on this path
        import importlib

        try:
            command = importlib.import_module(COMMANDS[argv[0]][0])
        except ModuleNotFoundError:
            if not getattr(sys, "frozen", False):
                raise
            print(f"error: `{argv[0]}` is not part of the desktop app; it runs from a source "
                  "checkout (see the README's Command line).", file=sys.stderr)
            return 2
        return command.main(argv[1:]) or 0
    args = parse_arguments(argv)
    from PySide6.QtCore import QTimer
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from gui.main_window import MainWindow, start_demo
    from gui.model_loading import wait_for_warm_ups
    from model.registry import APP_ICON

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("PixelCNN Studio")
    app.setOrganizationName("PixelCNN Studio")
    app.setWindowIcon(QIcon(str(APP_ICON)))
    app.setDesktopFileName("pixelcnn-studio")  # resources/pixelcnn-studio.desktop
    if args.self_test:
        from gui.selftest import run_self_test

        code = run_self_test()
        wait_for_warm_ups()
        return code
    window = MainWindow(args.model, load_in_background=True)
    if args.time_startup:
        report_startup(app, window)
    window.show()
    if args.screenshot:
        def save_screenshot():
            # After the status bar has laid out its last text (a grab at once caught it half
            # updated).
            QTimer.singleShot(100, lambda: window.grab().save(args.screenshot))
        window.completion_ended.connect(save_screenshot)
    if args.demo:
        start_demo(window)
    if args.quit_after is not None:
        # The window is left as drawn: closing must not wait on a "discard changes?" question.
        QTimer.singleShot(int(args.quit_after * 1000), lambda: (window.undo_stack.setClean(),
                                                               window.close()))
    code = app.exec()
    wait_for_warm_ups()
    return code


if __name__ == "__main__":
    exit_code = main()
    if "gui.model_loading" in sys.modules:  # the window ran: it may have work in the background
        from gui.model_loading import exit_process

        exit_process(exit_code)
    sys.exit(exit_code)
