"""PixelCNN Studio: draw half a picture and watch a PixelCNN complete it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

SAMPLE_DIGIT = Path(__file__).resolve().parent / "resources" / "samples" / "digit-3.png"


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pixelcnn-studio", description=__doc__)
    parser.add_argument("--model", help="a bundled model's name or a .safetensors path")
    parser.add_argument("--demo", action="store_true",
                        help="load a sample digit, erase its bottom half and complete it")
    parser.add_argument("--screenshot", metavar="PATH",
                        help="save a PNG of the window when the completion ends")
    parser.add_argument("--quit-after", type=float, metavar="SECONDS",
                        help="close the window after this many seconds")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(sys.argv[1:] if argv is None else argv)
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from gui.main_window import MainWindow, start_demo

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("PixelCNN Studio")
    app.setOrganizationName("PixelCNN Studio")
    window = MainWindow(args.model)
    window.show()
    if args.screenshot:
        def save_screenshot():
            window.grab().save(args.screenshot)
        window.completion_finished_callbacks.append(save_screenshot)
    if args.demo:
        start_demo(window, SAMPLE_DIGIT)
    if args.quit_after is not None:
        # The window is left as drawn: closing must not wait on a "discard changes?" question.
        QTimer.singleShot(int(args.quit_after * 1000), lambda: (window.undo_stack.setClean(),
                                                               window.close()))
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
