"""The sound classes of the procedural panoramic corpus.

Each class has a procedural sound (``sources.py``) and a procedural visual
(``video.py``), both keyed by the names below. The order is fixed: class ids are
indices into ``SOUND_CLASSES`` and are stored in clip metadata.
"""

from __future__ import annotations

SOUND_CLASSES: tuple[str, ...] = (
    "dog_bark",
    "siren",
    "rain",
    "wind",
    "birdsong",
    "footsteps",
    "church_bell",
    "car_engine",
    "helicopter",
    "speech_babble",
    "hand_claps",
    "drum_kit",
    "plucked_string",
    "running_water",
    "alarm_beeps",
    "crowd",
)

# Human wording used by captioners ("a dog barks", "a siren wails", ...).
CLASS_PHRASES: dict[str, str] = {
    "dog_bark": "a dog barking",
    "siren": "a siren",
    "rain": "rain",
    "wind": "wind",
    "birdsong": "birdsong",
    "footsteps": "footsteps",
    "church_bell": "a church bell",
    "car_engine": "a car engine",
    "helicopter": "a helicopter",
    "speech_babble": "people talking",
    "hand_claps": "hand claps",
    "drum_kit": "a drum kit",
    "plucked_string": "a plucked string",
    "running_water": "running water",
    "alarm_beeps": "alarm beeps",
    "crowd": "a crowd",
}


def class_id(name: str) -> int:
    """Index of ``name`` in :data:`SOUND_CLASSES`; raises ValueError naming the known classes."""
    try:
        return SOUND_CLASSES.index(name)
    except ValueError:
        raise ValueError(
            f"unknown sound class {name!r}; known: {', '.join(SOUND_CLASSES)}"
        ) from None
