"""Streaming generation: conditioning from engine frames and captions, generator sessions."""

from .session import GeneratorRuntime, GeneratorSession, PatchSampler, SessionConfig

__all__ = ["GeneratorRuntime", "GeneratorSession", "PatchSampler", "SessionConfig"]
