"""The device the app completes on, chosen by measurement and remembered in its settings.

With one device (the CPU) there is nothing to choose. With a GPU as well, the first time a
model is opened on this machine the warm-up thread times a few hundred pixels on each device
(model/devices.py) and reports the faster; the choice is kept in the settings under the model
and the machine's devices, so the next start takes it without measuring. The status bar's
device label says which device and why.
"""

from __future__ import annotations

import hashlib

from PySide6.QtCore import QSettings


def settings_key(name: str, card: dict, signature: str) -> str:
    """Per model (its name and when it was trained) and per set of devices."""
    digest = hashlib.sha256(f"{card.get('trained_at', '')}|{signature}".encode()).hexdigest()
    return f"devices/{name}-{digest[:16]}"


def recall(model, name: str, card: dict):
    """The choice for `model` without measuring, if there is one: the only device, or one
    saved in the settings (then used for completions from now on). None: to be measured."""
    from model.devices import DeviceChoice, available_devices, machine_signature, remember

    devices = available_devices()
    if len(devices) == 1:
        choice = DeviceChoice(devices[0])
    else:
        saved = QSettings().value(settings_key(name, card, machine_signature(devices)))
        choice = DeviceChoice.from_json(str(saved), devices) if saved else None
    if choice is not None:
        remember(model, choice)
    return choice


def keep(name: str, card: dict, choice) -> None:
    """Save a measured choice, so that this model is not measured again on this machine."""
    from model.devices import machine_signature

    QSettings().setValue(settings_key(name, card, machine_signature()), choice.to_json())


def label_text(choice, device_name: str | None = None) -> str:
    """"CPU · the only device"; while a run is on another device than the choice (the GPU
    failed and it fell back), that device alone; "Measuring devices…" before the choice."""
    if choice is None:
        return "Measuring devices…" if device_name is None else device_name
    if device_name is not None and device_name != choice.device.upper():
        return device_name
    return f"{choice.device.upper()} · {choice.reason()}"
