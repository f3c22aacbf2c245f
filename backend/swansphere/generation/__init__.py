"""Streaming generation: conditioning from engine frames and captions, generator sessions,
cross-session batching of the LocDiT sampler."""

from .batcher import SessionBatcher
from .session import GeneratorRuntime, GeneratorSession, PatchSampler, SessionConfig

__all__ = [
    "GeneratorRuntime",
    "GeneratorSession",
    "PatchSampler",
    "SessionBatcher",
    "SessionConfig",
]
