"""PySide6.QtGui for pixelcnn-studio.spec: PyInstaller's own hook, less the GTK 3 theme plugin.

That plugin (platformthemes/libqgtk3.so) links against the system's GTK 3, which a bundle
cannot ship, and which would load beside the bundle's own copy of GLib. Without it Qt uses
its generic theme (and the XDG desktop portal for file dialogs), and the build log has no
"Library not found" line for CI to fail on. This hook replaces the built-in one (hooks in
the spec's hookspath take precedence).
"""

from PyInstaller.utils.hooks.qt import add_qt6_dependencies

hiddenimports, binaries, datas = add_qt6_dependencies(__file__)
binaries = [(source, dest) for source, dest in binaries
            if not source.replace("\\", "/").endswith("platformthemes/libqgtk3.so")]
