"""The seed of a completion that was given none, drawn in one place: by the sampler, and by
the app's worker before PyTorch is loaded (this module does not import it), so that both
follow the same rule and the app can show and reuse the seed it ran with."""

from __future__ import annotations

import secrets


def new_seed() -> int:
    """32 fresh random bits."""
    return secrets.randbits(32)
