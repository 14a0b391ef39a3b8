"""Whether a request fits in memory, asked before the memory is taken.

Candidates are sampled as one batch, and each carries the sampler's per-layer state, its
stream of uniforms and its image: a request for 100,000 candidates would need about 100 GiB
and end in an allocation error deep inside NumPy. Every sampler's task checks first, and the
refusal names the limit.
"""

from __future__ import annotations

import os

from .config import ModelConfig

# Of the memory available now, the share one request may plan to take: the rest is the
# app's, the other programs', and the estimate's margin.
USABLE_PERCENT = 70


class MemoryLimitError(ValueError):
    """A request whose memory this machine does not have."""


def available_bytes() -> int | None:
    """Memory available to a new allocation now (Linux: MemAvailable), else the physical
    memory; None where neither can be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def bytes_per_candidate(config: ModelConfig) -> int:
    """About what one candidate costs while it is sampled: the larger of the fast sampler's
    per-layer state (padded vertical inputs, links and the row's horizontal inputs, float32)
    and the reference sampler's activations of one forward pass, plus the candidate's own
    uniforms (float64), image and one row of distributions."""
    h, w, c, hidden = config.height, config.width, config.channels, config.hidden_channels
    pad = max(config.first_kernel_size, config.kernel_size)
    fast_state = config.layers * ((h + pad) * (w + pad) + 3 * w + pad) * hidden * 4
    forward_pass = 8 * hidden * h * w * 4
    own = c * h * w * (8 + 1) + w * c * config.levels * 8
    return max(fast_state, forward_pass) + own


def check_candidates_fit(config: ModelConfig, candidates: int,
                         available: int | None = None) -> None:
    """Raise MemoryLimitError, naming the limit, if `candidates` cannot be had at once."""
    available = available_bytes() if available is None else available
    if available is None:
        return
    each = bytes_per_candidate(config)
    most = available * USABLE_PERCENT // (100 * each)
    if candidates > most:
        raise MemoryLimitError(
            f"{candidates} candidates need about {candidates * each / 2**30:.1f} GiB at once "
            f"({each / 2**20:.1f} MiB each for this model); this machine has "
            f"{available / 2**30:.1f} GiB available, enough for at most {max(most, 0)}.")
