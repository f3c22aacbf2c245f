"""Output formats and the one factory that turns a format name into a decoder.

Formats: "foa" (head-compensated AmbiX passthrough: W, Y, Z, X), "binaural" (L, R),
"stereo", "5.1", "7.1.4" (WAV/SMPTE channel order, see ``speakers.py``).
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

from swansphere.errors import InputError
from swansphere.foa.decoder import Decoder
from swansphere.foa.io import check_sample_rate

OUTPUT_FORMATS = ("foa", "binaural", "stereo", "5.1", "7.1.4")


def foa_passthrough_decoder(sample_rate: int) -> Decoder:
    """Identity decoder: the renderer's output is the head-compensated AmbiX stream itself."""
    return Decoder(np.eye(4)[:, :, None], sample_rate, ("W", "Y", "Z", "X"), "foa")


@lru_cache(maxsize=32)
def _cached_decoder(fmt: str, sample_rate: int, hrtf: str | None) -> Decoder:
    if fmt == "foa":
        return foa_passthrough_decoder(sample_rate)
    if fmt == "binaural":
        from swansphere.foa.binaural import design_binaural_decoder
        from swansphere.foa.hrtf import load_default_hrirs, load_sofa

        hrirs = (
            load_default_hrirs(sample_rate)
            if hrtf is None
            else load_sofa(hrtf).resampled(sample_rate)
        )
        return design_binaural_decoder(hrirs, sample_rate)
    from swansphere.foa.speakers import design_speaker_decoder, get_layout

    decoder = design_speaker_decoder(get_layout(fmt))
    return Decoder(decoder.filters, sample_rate, decoder.labels, decoder.name)


def build_decoder(fmt: str, sample_rate: int, hrtf: str | os.PathLike | None = None) -> Decoder:
    """Decoder for output format ``fmt`` at ``sample_rate`` Hz.

    ``hrtf`` is a SimpleFreeFieldHRIR SOFA file for binaural output (default: MIT KEMAR
    from Debian's libmysofa1). Designs are cached, so repeated calls are cheap.
    """
    if fmt not in OUTPUT_FORMATS:
        raise InputError(
            f"unknown output format {fmt!r}; choose one of {', '.join(OUTPUT_FORMATS)}"
        )
    check_sample_rate(sample_rate)
    return _cached_decoder(fmt, int(sample_rate), None if hrtf is None else os.fspath(hrtf))
