"""Procedural mono sound sources for the panoramic training corpus.

Every class in :data:`~swansphere_training.corpus.classes.SOUND_CLASSES` has one synthesiser
here, built from NumPy/SciPy signal primitives (no samples, no external engines). Each draws all
of its parameters (pitch, tempo, density, timbre, event times, ...) from the ``rng`` it is given,
so two seeds give two different instances of the class while one seed always gives bit-identical
output.

Public entry point: :func:`synthesize_source`. It runs the class's raw synthesiser from
:data:`SYNTHESIZERS` and conditions the result the same way for every class:

1. a 20 Hz high-pass and an exact mean removal (no DC offset),
2. raised-cosine fades of up to 20 ms at both clip edges (no clicks when clips are cut),
3. peak normalisation to :data:`PEAK_DBFS` (-3 dBFS),
4. a class-typical gain from :data:`CLASS_GAIN_DB` (<= 0 dB), so that an impulsive drum kit and
   a steady drizzle, mixed at their natural levels, do not both peak at the same value.

Conventions: signals are mono float64 arrays of shape ``(n,)`` with
``n = round(seconds * sample_rate)``; amplitudes are full-scale linear (1.0 = 0 dBFS);
frequencies are in Hz and times in seconds. All synthesised tones are kept below
:data:`MAX_FREQ_FRACTION` x ``sample_rate`` (0.45, i.e. 90 % of Nyquist), so any rate from
16 kHz up works without aliasing of the tonal parts.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from scipy import signal

from swansphere.errors import InputError
from swansphere_training.corpus.classes import SOUND_CLASSES

# Peak level of every source before the class gain, in dB relative to full scale.
PEAK_DBFS: float = -3.0

# Class-typical loudness, in dB added to PEAK_DBFS. Peak normalisation makes impulsive classes
# (claps, drums, barks) sound quiet and dense ones (rain, wind, babble) loud at the same peak, and
# some classes are simply louder in the world (sirens, alarms) than others (birdsong, footsteps).
# These gains put the classes at plausible relative loudness for mixing several in one scene.
CLASS_GAIN_DB: dict[str, float] = {
    "dog_bark": 0.0,
    "siren": 0.0,
    "rain": -6.0,
    "wind": -6.0,
    "birdsong": -5.0,
    "footsteps": -4.0,
    "church_bell": 0.0,
    "car_engine": -2.0,
    "helicopter": -1.0,
    "speech_babble": -4.0,
    "hand_claps": -1.0,
    "drum_kit": 0.0,
    "plucked_string": -3.0,
    "running_water": -5.0,
    "alarm_beeps": -2.0,
    "crowd": -3.0,
}

# Highest frequency a synthesiser places a tone at, as a fraction of the sample rate.
MAX_FREQ_FRACTION: float = 0.45
MIN_SAMPLE_RATE: int = 16000
FADE_SECONDS: float = 0.02
DC_CUTOFF_HZ: float = 20.0

Synth = Callable[[int, int, np.random.Generator], np.ndarray]


# ---------------------------------------------------------------------------------------------
# Shared primitives. All take and return float64 arrays of shape (n,) unless stated otherwise.
# ---------------------------------------------------------------------------------------------


def _fmax(sr: float) -> float:
    """Highest frequency (Hz) any synthesised component may have at sample rate ``sr``."""
    return MAX_FREQ_FRACTION * sr


def _clamp_hz(freq: np.ndarray | float, sr: float) -> np.ndarray | float:
    """Clamp frequencies (Hz) into [1 Hz, 0.45 sr] so tones never alias."""
    return np.clip(freq, 1.0, _fmax(sr))


def _lowpass(x: np.ndarray, cutoff: float, sr: float, order: int = 2) -> np.ndarray:
    """Butterworth low-pass along the last axis; ``cutoff`` (Hz) is clamped below 0.45 sr."""
    sos = signal.butter(order, float(_clamp_hz(cutoff, sr)), "lowpass", fs=sr, output="sos")
    return signal.sosfilt(sos, x, axis=-1)


def _highpass(x: np.ndarray, cutoff: float, sr: float, order: int = 2) -> np.ndarray:
    """Butterworth high-pass along the last axis; ``cutoff`` (Hz) is clamped below 0.45 sr."""
    sos = signal.butter(order, float(_clamp_hz(cutoff, sr)), "highpass", fs=sr, output="sos")
    return signal.sosfilt(sos, x, axis=-1)


def _bandpass(x: np.ndarray, low: float, high: float, sr: float, order: int = 2) -> np.ndarray:
    """Butterworth band-pass (Hz edges); the band is squeezed below 0.45 sr when it does not fit."""
    high = float(_clamp_hz(high, sr))
    low = float(min(max(low, 1.0), 0.7 * high))
    sos = signal.butter(order, [low, high], "bandpass", fs=sr, output="sos")
    return signal.sosfilt(sos, x, axis=-1)


def _resonator(x: np.ndarray, freq: float, q: float, sr: float) -> np.ndarray:
    """Second-order peaking band-pass (unit gain at ``freq`` Hz, quality ``q``)."""
    b, a = signal.iirpeak(float(_clamp_hz(freq, sr)), q, fs=sr)
    return signal.lfilter(b, a, x, axis=-1)


def _phase(freq: np.ndarray, sr: float) -> np.ndarray:
    """Running phase in radians of an oscillator whose instantaneous frequency is ``freq`` (Hz)."""
    return 2.0 * np.pi * np.cumsum(freq) / sr


def _smooth_noise(rng: np.random.Generator, n: int, sr: float, rate_hz: float) -> np.ndarray:
    """Slow random curve, (n,), about unit variance, with new random knots ``rate_hz`` per second.

    Knots are joined by smoothstep interpolation, so the curve has no corners (gusts, drifts).
    """
    knots = rng.standard_normal(int(np.ceil(n / sr * rate_hz)) + 2)
    pos = np.arange(n) * (rate_hz / sr)
    i = pos.astype(np.int64)
    frac = pos - i
    w = frac * frac * (3.0 - 2.0 * frac)
    return knots[i] * (1.0 - w) + knots[i + 1] * w


def _unit(x: np.ndarray) -> np.ndarray:
    """``x`` scaled to unit RMS (returned unchanged when silent)."""
    rms = float(np.sqrt(np.mean(x * x))) if x.size else 0.0
    return x / rms if rms > 0.0 else x


def _add_grain(out: np.ndarray, start: int, grain: np.ndarray) -> None:
    """Add ``grain`` into ``out`` starting at sample ``start``, cropping at both ends (in place)."""
    if start >= out.size or start + grain.size <= 0:
        return
    lo = max(start, 0)
    hi = min(start + grain.size, out.size)
    out[lo:hi] += grain[lo - start : hi - start]


def _impulses(n: int, times: np.ndarray, gains: np.ndarray, sr: float) -> np.ndarray:
    """Impulse train (n,) with ``gains`` at ``times`` (s); events past the clip are dropped."""
    idx = np.round(np.asarray(times) * sr).astype(np.int64)
    keep = (idx >= 0) & (idx < n)
    return np.bincount(idx[keep], weights=np.asarray(gains)[keep], minlength=n).astype(np.float64)


def _place(
    n: int, times: np.ndarray, gains: np.ndarray, grain: np.ndarray, sr: float
) -> np.ndarray:
    """(n,) signal with ``grain`` added at every event time (s), scaled by its gain.

    Events are few (tens to hundreds per clip), so one slice-add per event is cheaper than an
    FFT convolution of a whole-clip impulse train.
    """
    out = np.zeros(n)
    for when, gain in zip(np.round(np.asarray(times) * sr).astype(np.int64), gains, strict=True):
        _add_grain(out, int(when), gain * grain)
    return out


def _first_onset(rng: np.random.Generator, seconds: float, latest: float = 0.4) -> float:
    """Start time (s) of a clip's first event: early enough that even a short clip has sound."""
    return float(rng.uniform(0.0, min(latest, 0.25 * seconds)))


def _decay_env(length: int, sr: float, attack: float, tau: float) -> np.ndarray:
    """Linear attack of ``attack`` s then exponential decay with time constant ``tau`` s."""
    t = np.arange(length) / sr
    return np.minimum(t / max(attack, 1.0 / sr), 1.0) * np.exp(-np.maximum(t - attack, 0.0) / tau)


def _harmonic_stack(phase: np.ndarray, amps: np.ndarray, freq_max: float, sr: float) -> np.ndarray:
    """Sum of ``amps[k-1] * sin(k * phase)``, keeping only harmonics k with k*freq_max < 0.45 sr.

    ``phase`` (L,) is the fundamental's phase in radians and ``freq_max`` (Hz) its highest
    instantaneous frequency, so each kept harmonic stays below the anti-alias limit. The
    harmonics come from the Chebyshev recurrence sin((k+1)p) = 2 cos(p) sin(kp) - sin((k-1)p),
    two multiply-adds per harmonic instead of one ``sin`` each.
    """
    k_max = max(1, min(len(amps), int(_fmax(sr) // max(freq_max, 1.0))))
    two_cos = 2.0 * np.cos(phase)
    prev, cur = np.zeros_like(phase), np.sin(phase)
    out = amps[0] * cur
    for k in range(2, k_max + 1):
        prev, cur = cur, two_cos * cur - prev
        out += amps[k - 1] * cur
    return out


# ---------------------------------------------------------------------------------------------
# Per-class synthesisers: (n samples, sample rate Hz, rng) -> raw mono signal (n,), any level.
# ---------------------------------------------------------------------------------------------


def _bark(f0: float, dur: float, sr: float, rng: np.random.Generator) -> np.ndarray:
    """One bark: a harsh harmonic burst whose pitch jumps up then falls over ``dur`` s."""
    length = max(int(dur * sr), 8)
    u = np.arange(length) / length
    rise, fall = rng.uniform(0.15, 0.45), rng.uniform(0.2, 0.5)
    # Fast upward jump in the first fifth, then a steady fall: the "wuff" contour.
    contour = 1.0 + rise * np.sin(0.5 * np.pi * np.minimum(u / 0.2, 1.0)) - fall * u
    freq = f0 * contour
    phase = _phase(freq, sr) + rng.uniform(0, 2 * np.pi)
    amps = rng.uniform(0.6, 1.0, 14) / np.arange(1, 15) ** rng.uniform(0.7, 1.2)
    tone = _harmonic_stack(phase, amps, float(freq.max()), sr)
    # Throat roughness: a 25-60 Hz growl flutter on the tone and a noisy share of the excitation.
    flutter = 1.0 + 0.35 * np.sin(2 * np.pi * rng.uniform(25, 60) * u * dur)
    noisy = tone * flutter + rng.uniform(0.2, 0.6) * rng.standard_normal(length)
    env = np.minimum(u / 0.06, 1.0) * np.exp(-3.0 * u) * np.sin(np.pi * u) ** 0.3
    return noisy * env


def _dog_bark(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Groups of 1-4 barks from one dog; dog size sets pitch, formants and bark length.

    Parameters drawn: size (0 small .. 1 large) -> f0 750..280 Hz, formants F1 1100..600 Hz and
    F2 2600..1500 Hz; barks per group 1-4, 60-300 ms apart; 0.5-2.5 s between groups.
    """
    seconds = n / sr
    size = rng.uniform(0.0, 1.0)
    f0 = (750.0 - 470.0 * size) * rng.uniform(0.9, 1.1)
    formants = [
        ((1100.0 - 500.0 * size) * rng.uniform(0.9, 1.1), rng.uniform(2.0, 4.0), 1.0),
        ((2600.0 - 1100.0 * size) * rng.uniform(0.9, 1.1), rng.uniform(3.0, 6.0), 0.6),
        ((3800.0 - 1000.0 * size) * rng.uniform(0.9, 1.1), rng.uniform(4.0, 8.0), 0.3),
    ]
    raw = np.zeros(n)
    t = _first_onset(rng, seconds)
    while t < seconds:
        for _ in range(int(rng.integers(1, 5))):
            dur = rng.uniform(0.08, 0.2) * (0.8 + 0.5 * size)
            _add_grain(raw, int(t * sr), _bark(f0 * rng.uniform(0.92, 1.1), dur, sr, rng))
            t += dur + rng.uniform(0.06, 0.3)
        t += rng.uniform(0.5, 2.5)
    voiced = sum(g * _resonator(raw, f, q, sr) for f, q, g in formants)
    # A dog's mouth radiates little above ~4 kHz (less for big dogs).
    return _lowpass(voiced, 5000.0 - 2000.0 * size, sr)


def _siren_contour(
    n: int, sr: float, rng: np.random.Generator, low: float, high: float
) -> np.ndarray:
    """Instantaneous frequency (n,) in Hz of a siren: slow wail, fast yelp or two-tone hi-lo."""
    t = np.arange(n) / sr
    mode = rng.choice(["wail", "yelp", "hilo"])
    start = rng.uniform(0.0, 1.0)
    if mode in ("wail", "yelp"):
        # Wail: one slow up-down sweep every 2.5-7 s; yelp: the same sweep 3-5 times a second.
        period = rng.uniform(2.5, 7.0) if mode == "wail" else rng.uniform(0.2, 0.35)
        # Motor sirens spin up more slowly than they spin down: skew the cosine cycle.
        u = ((t / period + start) % 1.0) ** rng.uniform(0.6, 1.0)
        return low + (high - low) * (0.5 - 0.5 * np.cos(2 * np.pi * u))
    period = rng.uniform(0.9, 1.8)
    square = ((t / period + start) % 1.0) < 0.5
    tone_b = min(low * rng.uniform(1.25, 1.45), high)
    # Real two-tone units glide between tones in ~20 ms rather than jumping.
    return _moving_average(np.where(square, low, tone_b), int(0.02 * sr))


def _moving_average(x: np.ndarray, width: int) -> np.ndarray:
    """Causal moving average of ``x`` (n,) over ``width`` samples, starting from ``x[0]``."""
    width = max(width, 1)
    csum = np.cumsum(np.concatenate([np.full(width, x[0]), x]))
    return (csum[width:] - csum[:-width]) / width


def _siren(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Emergency siren: a bright tone sweeping between two pitches in the 500-2000 Hz band.

    Parameters drawn: mode (wail period 2.5-7 s / yelp period 0.2-0.35 s / hi-lo period
    0.9-1.8 s), low tone 500-800 Hz, high tone 1.5-2.4 x low (<= 1900 Hz), slight vibrato and a
    slow Doppler-like pitch drift of up to 3 %.
    """
    t = np.arange(n) / sr
    low = rng.uniform(500.0, 800.0)
    high = min(low * rng.uniform(1.5, 2.4), 1900.0)
    freq = _siren_contour(n, sr, rng, low, high)
    vibrato = 1.0 + 0.004 * np.sin(2 * np.pi * rng.uniform(4.0, 7.0) * t)
    drift = 1.0 + rng.uniform(0.0, 0.03) * np.tanh(_smooth_noise(rng, n, sr, 0.2))
    freq = np.asarray(_clamp_hz(freq * vibrato * drift, sr))
    # Square-ish horn timbre: odd harmonics dominate, the fundamental stays strongest.
    amps = np.array([1.0, 0.08, 0.35, 0.05, 0.18, 0.03, 0.1, 0.02])
    tone = _harmonic_stack(_phase(freq, sr), amps, float(freq.max()), sr)
    return tone * (1.0 + 0.1 * _smooth_noise(rng, n, sr, 1.0))


def _rain(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Rain: a dense crackle of drop clicks, a few ringing 'plinks' and a high hiss bed.

    Parameters drawn: drop density 300-5000 drops/s (log-uniform), brightness cutoff 3-12 kHz,
    plink rate 2-25 /s at 4 random pitches 1.5-5 kHz, hiss level, low surface rumble level.
    """
    seconds = n / sr
    density = 10 ** rng.uniform(np.log10(300.0), np.log10(5000.0))
    bright = rng.uniform(3000.0, 12000.0)
    count = int(rng.poisson(density * seconds))
    drops = _impulses(
        n,
        rng.uniform(0, seconds, count),
        rng.lognormal(0.0, 0.7, count) * rng.choice([-1.0, 1.0], count),
        sr,
    )
    crackle = _lowpass(_highpass(drops, 1500.0, sr), bright, sr)
    plink_count = int(rng.poisson(rng.uniform(2.0, 25.0) * seconds))
    plink_times = rng.uniform(0, seconds, plink_count)
    plink_gain = rng.lognormal(0.0, 0.5, plink_count)
    plink_pitch = rng.integers(0, 4, plink_count)
    plinks = np.zeros(n)
    for k, freq in enumerate(rng.uniform(1500.0, 5000.0, 4)):
        sel = plink_pitch == k
        train = _impulses(n, plink_times[sel], plink_gain[sel], sr)
        plinks += _resonator(train, freq, rng.uniform(15.0, 40.0), sr)
    noise = rng.standard_normal(n)
    hiss = _unit(_bandpass(noise, 1000.0, bright, sr)) * (
        1.0 + 0.15 * _smooth_noise(rng, n, sr, 0.5)
    )
    rumble = _unit(_lowpass(noise, 300.0, sr))
    dense = np.clip(np.log10(density / 300.0), 0.0, 1.3)  # 0 at drizzle, ~1.2 in a downpour
    return (
        _unit(crackle)
        + rng.uniform(0.5, 1.0) * _unit(plinks) * 0.6
        + (0.2 + 0.5 * dense) * hiss
        + rng.uniform(0.05, 0.25) * rumble
    )


def _wind(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Wind: low-passed noise that swells and brightens in slow gusts, sometimes whistling.

    Parameters drawn: gust rate 0.08-0.4 /s, gust depth 0.4-0.9, calm cutoff 120-400 Hz, gust
    cutoff 2-4 x calm (<= 900 Hz), whistle pitch 300-800 Hz (x1.3 in gusts) and level 0-0.6.
    """
    gust = 0.5 + 0.5 * np.tanh(1.3 * _smooth_noise(rng, n, sr, rng.uniform(0.08, 0.4)))
    depth = rng.uniform(0.4, 0.9)
    calm_cut = rng.uniform(120.0, 400.0)
    gust_cut = min(calm_cut * rng.uniform(2.0, 4.0), 900.0)
    whistle_f = rng.uniform(300.0, 800.0)
    whistle_q = rng.uniform(8.0, 20.0)
    whistle_level = rng.uniform(0.0, 0.6)
    noise = rng.standard_normal(n)
    calm = _unit(_lowpass(noise, calm_cut, sr, order=3))
    gusty = _unit(_lowpass(noise, gust_cut, sr, order=3))
    # A whistle's pitch rises with wind speed: cross-fade two resonators as the gust grows.
    whistle = (1.0 - gust) * _unit(_resonator(noise, whistle_f, whistle_q, sr)) + gust * _unit(
        _resonator(noise, whistle_f * 1.3, whistle_q, sr)
    )
    body = (1.0 - gust) * calm + gust * gusty + whistle_level * gust**2 * whistle
    return body * ((1.0 - depth) + depth * gust)


def _syllable(
    start_hz: float, end_hz: float, fm_rate: float, fm_depth: float, dur: float, sr: float
) -> np.ndarray:
    """One bird syllable: a sine chirp from ``start_hz`` to ``end_hz`` with sinusoidal FM."""
    length = max(int(dur * sr), 8)
    t = np.arange(length) / sr
    u = t / dur
    freq = start_hz + (end_hz - start_hz) * u + fm_depth * np.sin(2 * np.pi * fm_rate * t)
    freq = np.asarray(_clamp_hz(freq, sr))
    phase = _phase(freq, sr)
    tone = np.sin(phase)
    if 2 * freq.max() < _fmax(sr):
        tone += 0.12 * np.sin(2 * phase)
    return tone * np.sin(np.pi * u) ** 1.5


def _one_bird(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """One bird repeating variants of its motif: syllables drawn from a small repertoire."""
    seconds = n / sr
    base = min(rng.uniform(2000.0, 5500.0), 0.3 * sr)
    repertoire = [
        (
            base * rng.uniform(0.7, 1.3),
            base * rng.uniform(0.6, 1.5),
            rng.uniform(15.0, 90.0),
            base * rng.uniform(0.0, 0.2) * rng.choice([0.0, 1.0]),
            rng.uniform(0.03, 0.15),
        )
        for _ in range(int(rng.integers(2, 6)))
    ]
    motif = [int(i) for i in rng.integers(0, len(repertoire), int(rng.integers(3, 9)))]
    gap = rng.uniform(0.015, 0.06)
    out = np.zeros(n)
    t = _first_onset(rng, seconds, 1.0)
    while t < seconds:
        scale = rng.uniform(0.96, 1.04)  # each repetition sung slightly sharper or flatter
        for i in motif[: int(rng.integers(max(2, len(motif) - 2), len(motif) + 1))]:
            f_a, f_b, rate, depth, dur = repertoire[i]
            _add_grain(out, int(t * sr), _syllable(f_a * scale, f_b * scale, rate, depth, dur, sr))
            t += dur + gap
        t += rng.uniform(0.4, 3.0)
    return out


def _birdsong(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Birdsong: 1-3 birds, each singing motifs of FM chirp syllables between pauses.

    Parameters drawn per bird: base pitch 2-5.5 kHz, repertoire of 2-5 syllables (start/end
    pitch, FM rate 15-90 Hz and depth, 30-150 ms long), motif of 3-8 syllables, syllable gap
    15-60 ms, pause 0.4-3 s, level 0.3-1.
    """
    out = np.zeros(n)
    for _ in range(int(rng.integers(1, 4))):
        out += rng.uniform(0.3, 1.0) * _one_bird(n, sr, rng)
    return _highpass(out, 1000.0, sr)


def _footsteps(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Footsteps: heel-and-toe thumps at a walking (or running) tempo on a random surface.

    Parameters drawn: tempo 1.3-2.3 steps/s walking (25 %: 2.6-3.3 running), timing jitter 3 %,
    surface brightness cutoff 600-5000 Hz, grit (gravel crunch) 0-1, thump pitch 55-110 Hz,
    heel-to-toe delay 35-90 ms, 10 % chance per step of a short stop.
    """
    seconds = n / sr
    running = rng.uniform() < 0.25
    period = 1.0 / (rng.uniform(2.6, 3.3) if running else rng.uniform(1.3, 2.3))
    bright = 10 ** rng.uniform(np.log10(600.0), np.log10(5000.0))
    grit = rng.uniform(0.0, 1.0)
    thump_hz = rng.uniform(55.0, 110.0)
    toe_delay = rng.uniform(0.035, 0.09)
    scuff = np.zeros(n)
    thumps = np.zeros(n)
    grain_len = int(0.15 * sr)
    thump = np.sin(2 * np.pi * thump_hz * np.arange(grain_len) / sr) * _decay_env(
        grain_len, sr, 0.002, 0.03
    )
    t = _first_onset(rng, seconds)
    foot = 0
    while t < seconds:
        level = rng.uniform(0.75, 1.0) * (1.0 if foot % 2 else rng.uniform(0.8, 1.0))
        for delay, part in ((0.0, 1.0), (toe_delay, rng.uniform(0.3, 0.6))):
            tau = rng.uniform(0.008, 0.025) * (1.0 + 2.0 * grit)
            burst = rng.standard_normal(grain_len) * _decay_env(grain_len, sr, 0.001, tau)
            if grit > 0.3:  # gravel: a sparse crackle of stones shifting under the sole
                burst *= 1.0 + 4.0 * grit * (rng.uniform(size=grain_len) < 0.02)
            _add_grain(scuff, int((t + delay) * sr), level * part * burst)
            _add_grain(thumps, int((t + delay) * sr), level * part * thump)
        foot += 1
        t += period * (1.0 + 0.03 * rng.standard_normal())
        if rng.uniform() < 0.1:
            t += rng.uniform(0.5, 1.5)
    scuff = _lowpass(_highpass(scuff, 150.0, sr), bright, sr)
    return _unit(scuff) + rng.uniform(0.4, 1.0) * _unit(thumps)


# Bell partials relative to the prime (strike note): hum, prime, tierce (minor third),
# quint, nominal, then the upper partials of a tuned church bell.
_BELL_RATIOS = np.array([0.5, 1.0, 1.2, 1.5, 2.0, 2.5, 2.67, 3.0, 4.0, 5.33])
_BELL_AMPS = np.array([0.5, 0.55, 0.45, 0.15, 0.9, 0.3, 0.3, 0.2, 0.15, 0.08])


def _church_bell(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Church bell: inharmonic partials (hum, prime, tierce, quint, nominal, ...) ringing out.

    Parameters drawn: prime 180-600 Hz (log-uniform), per-partial detune 0.4 % and level +-30 %,
    hum decay T60 6-16 s (higher partials shorter, ~ratio^-0.8), beating doublets 0.3-1.5 Hz
    apart, strike pattern (a toll every 1.5-4 s, or a few strikes with long gaps), clapper clank.
    Each partial is a two-pole resonator driven by the strike impulse train.
    """
    seconds = n / sr
    prime = 10 ** rng.uniform(np.log10(180.0), np.log10(600.0))
    freqs = prime * _BELL_RATIOS * (1.0 + 0.004 * rng.standard_normal(_BELL_RATIOS.size))
    freqs[1] = prime
    amps = _BELL_AMPS * rng.uniform(0.7, 1.3, _BELL_RATIOS.size)
    t60 = rng.uniform(6.0, 16.0) * (0.5 / _BELL_RATIOS) ** 0.8
    if rng.uniform() < 0.6:  # tolling
        gaps = rng.uniform(1.5, 4.0) * (1.0 + 0.05 * rng.standard_normal(64))
    else:  # a few irregular strikes
        gaps = rng.uniform(1.0, 6.0, 64)
    times = _first_onset(rng, seconds) + np.concatenate([[0.0], np.cumsum(gaps)])
    strikes = _impulses(n, times, rng.uniform(0.7, 1.0, times.size), sr)
    out = np.zeros(n)
    for freq, amp, decay in zip(freqs, amps, t60, strict=True):
        if freq >= _fmax(sr):
            continue
        # Real bells split their low partials into two close modes that beat slowly.
        split = rng.uniform(0.3, 1.5) if freq < 3.1 * prime else 0.0
        for f, share in ((freq, 1.0), (freq + split, 0.6 if split else 0.0)):
            if share == 0.0:
                continue
            w = 2 * np.pi * f / sr
            r = np.exp(-6.91 / (decay * sr))
            out += (
                share * amp * signal.lfilter([np.sin(w)], [1.0, -2 * r * np.cos(w), r * r], strikes)
            )
    clank_len = int(0.02 * sr)
    clank = rng.standard_normal(clank_len) * _decay_env(clank_len, sr, 0.0005, 0.004)
    return out + 0.15 * _highpass(signal.oaconvolve(strikes, clank)[:n], 2000.0, sr)


def _car_engine(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Idling or cruising combustion engine: a firing-rate pulse train with drifting RPM.

    Parameters drawn: cylinders 4/6/8, mean firing frequency 25-120 Hz (RPM = f * 120 / cyl),
    RPM drift depth 5-25 % at 0.1-0.4 Hz, per-cylinder level imbalance 12 %, pulse width
    15-35 % of a firing period, exhaust cutoff 300-1200 Hz, combustion noise and gear whine
    levels. The firing fundamental is always below 200 Hz.
    """
    cyl = int(rng.choice([4, 6, 8]))
    fire_mean = rng.uniform(25.0, 120.0)
    drift = rng.uniform(0.05, 0.25) * np.tanh(_smooth_noise(rng, n, sr, rng.uniform(0.1, 0.4)))
    fire_hz = np.clip(fire_mean * (1.0 + drift), 20.0, 190.0)
    width = rng.uniform(0.15, 0.35)
    imbalance = 1.0 + 0.12 * rng.standard_normal(cyl)
    exhaust_cut = rng.uniform(300.0, 1200.0)
    whine_order = rng.uniform(8.0, 20.0)
    # Firing counter: integer part = which firing, fraction = position inside the firing period.
    fires = np.cumsum(fire_hz) / sr + rng.uniform(0.0, 1.0)
    frac = fires % 1.0
    cylinder = fires.astype(np.int64) % cyl
    pulse = np.where(frac < width, np.sin(np.pi * frac / width) ** 2, 0.0) * imbalance[cylinder]
    fundamental = np.sin(2 * np.pi * fires)
    noise = rng.standard_normal(n)
    combustion = _bandpass(noise * pulse, 500.0, 3000.0, sr)
    rev_hz = fire_hz * 2.0 / cyl  # crankshaft revolutions per second
    whine = np.sin(_phase(np.asarray(_clamp_hz(rev_hz * whine_order, sr)), sr))
    exhaust = _lowpass(pulse - pulse.mean(), exhaust_cut, sr)
    return (
        _unit(exhaust)
        + rng.uniform(0.6, 1.0) * fundamental
        + rng.uniform(0.05, 0.25) * _unit(combustion)
        + rng.uniform(0.0, 0.05) * whine
    )


def _helicopter(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Helicopter: noise chopped at the main-rotor blade rate, a low thump, tail rotor and turbine.

    Parameters drawn: blade-passage rate 9-28 Hz with 3 % drift, slap sharpness, chop depth
    0.6-1, noise cutoff 800-2500 Hz, tail-rotor rate 4-6 x main, turbine whine 3-6 kHz, slow
    distance (level) changes.
    """
    blade_hz = rng.uniform(9.0, 28.0) * (1.0 + 0.03 * np.tanh(_smooth_noise(rng, n, sr, 0.2)))
    sharp = rng.uniform(6.0, 15.0)
    depth = rng.uniform(0.6, 1.0)
    noise_cut = rng.uniform(800.0, 2500.0)
    tail_ratio = rng.uniform(4.0, 6.0)
    turbine_hz = float(_clamp_hz(rng.uniform(3000.0, 6000.0), sr))
    cycles = np.cumsum(blade_hz) / sr + rng.uniform(0.0, 1.0)
    frac = cycles % 1.0
    # Blade slap: a fast (not instant) rise then exponential fall once per blade passage.
    slap = np.exp(-sharp * frac) * (1.0 - np.exp(-frac * 80.0))
    tail = 0.5 + 0.5 * np.cos(2 * np.pi * cycles * tail_ratio)
    noise = rng.standard_normal(n)
    chopped = _unit(_lowpass(noise, noise_cut, sr)) * ((1.0 - depth) + depth * _unit(slap))
    thump = _unit(_lowpass(slap - slap.mean(), 120.0, sr, order=4))
    tail_noise = _unit(_bandpass(rng.standard_normal(n), 1000.0, 4000.0, sr)) * tail
    turbine = np.sin(2 * np.pi * turbine_hz * np.arange(n) / sr)
    distance = 1.0 + 0.2 * np.tanh(_smooth_noise(rng, n, sr, 0.15))
    mix = (
        chopped
        + rng.uniform(0.8, 1.5) * thump
        + rng.uniform(0.1, 0.3) * tail_noise
        + rng.uniform(0.01, 0.04) * turbine
    )
    return mix * distance


# Vowel formants F1, F2, F3 (Hz) of an adult male voice: a, e, i, o, u, schwa.
_VOWELS = np.array(
    [
        [730.0, 1090.0, 2440.0],
        [530.0, 1840.0, 2480.0],
        [270.0, 2290.0, 3010.0],
        [570.0, 840.0, 2410.0],
        [300.0, 870.0, 2240.0],
        [500.0, 1500.0, 2500.0],
    ]
)
_FORMANT_BANDWIDTHS = np.array([80.0, 110.0, 160.0])


def _syllable_track(
    rng: np.random.Generator, seconds: float, rate_hz: float
) -> tuple[np.ndarray, np.ndarray]:
    """Syllable starts and durations (s) of one talker: ~rate_hz syllables, phrase pauses."""
    starts, durs = [], []
    t = _first_onset(rng, seconds, 1.0)
    while t < seconds:
        for _ in range(int(rng.integers(3, 12))):  # one phrase
            dur = rng.uniform(0.6, 1.4) / rate_hz
            starts.append(t)
            durs.append(dur * rng.uniform(0.75, 0.95))
            t += dur
        t += rng.uniform(0.15, 0.8)
    return np.array(starts), np.array(durs)


# One period of the differentiated Rosenberg glottal pulse, tabulated on a fine grid: the flow
# rises as a half cosine over 40 % of the period, falls as a quarter cosine over 16 %, then the
# glottis stays closed. Its derivative (lip radiation) gives the -6 dB/octave voice tilt.
_GLOTTAL_GRID = np.linspace(0.0, 1.0, 4097)
_GLOTTAL_FLOW = np.where(
    _GLOTTAL_GRID < 0.4,
    0.5 - 0.5 * np.cos(np.pi * _GLOTTAL_GRID / 0.4),
    np.where(_GLOTTAL_GRID < 0.56, np.cos(0.5 * np.pi * (_GLOTTAL_GRID - 0.4) / 0.16), 0.0),
)
_GLOTTAL_PULSE = np.gradient(_GLOTTAL_FLOW, _GLOTTAL_GRID)
_GLOTTAL_PULSE /= np.max(np.abs(_GLOTTAL_PULSE))
# Syllable loudness over its duration u in [0, 1] and the consonant hiss in its first 15 %.
_SYLLABLE_ENV = np.sin(np.pi * _GLOTTAL_GRID) ** 0.7
_FRICATIVE_ENV = np.sin(np.pi * np.clip(_GLOTTAL_GRID / 0.15, 0.0, 1.0))


def _lookup(table: np.ndarray, u: np.ndarray) -> np.ndarray:
    """``table`` (sampled on _GLOTTAL_GRID over [0, 1]) at positions ``u``; 0 outside [0, 1].

    Nearest-entry lookup on the 4097-point grid: far cheaper than np.interp's binary search,
    and the 1/8192 position error is inaudible for these smooth shapes.
    """
    idx = np.rint(u * (table.size - 1)).astype(np.int64)
    inside = (idx >= 0) & (idx < table.size)
    return np.where(inside, table[np.clip(idx, 0, table.size - 1)], 0.0)


def _glottal_source(f0: np.ndarray, sr: float, rng: np.random.Generator) -> np.ndarray:
    """Glottal excitation (n,) at instantaneous pitch ``f0`` (Hz), by table lookup on phase."""
    frac = (np.cumsum(f0) / sr + rng.uniform()) % 1.0
    return _lookup(_GLOTTAL_PULSE, frac)


def _voice(
    n: int, sr: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One talker at rate ``sr``: voiced source, formant knots and fricative envelope.

    Returns ``(source (n,), knot_times (S,) in s, knot_formants (S, 3) in Hz, fricative (n,))``:
    the glottal source already shaped by the syllable envelope, the vowel formants F1..F3 at
    each syllable centre, and an envelope (0..1) of the consonant hiss at syllable onsets.
    Draws a sex (pitch 85-150 Hz or 165-260 Hz, formant scale 1.0 or 1.17), intonation depth
    5-15 %, syllable rate 3-6 /s with phrase pauses, one vowel per syllable, a fricative at
    40 % of syllable onsets and a level (distance) 0.3-1.
    """
    t = np.arange(n) / sr
    female = rng.uniform() < 0.5
    f0_mean = rng.uniform(165.0, 260.0) if female else rng.uniform(85.0, 150.0)
    f0 = f0_mean * (1.0 + rng.uniform(0.05, 0.15) * _smooth_noise(rng, n, sr, 3.0))
    starts, durs = _syllable_track(rng, n / sr, rng.uniform(3.0, 6.0))
    # Which syllable each sample belongs to, and how far through it we are (u in [0, 1)).
    idx = np.clip(np.searchsorted(starts, t, side="right") - 1, 0, len(starts) - 1)
    u = (t - starts[idx]) / durs[idx]
    env = _lookup(_SYLLABLE_ENV, u)
    vowels = _VOWELS[rng.integers(0, len(_VOWELS), len(starts))]
    vowels = vowels * (1.17 if female else 1.0) * rng.uniform(0.93, 1.07, vowels.shape)
    level = rng.uniform(0.3, 1.0)
    breath = 0.05 * rng.standard_normal(n)
    source = level * env * (_glottal_source(f0, sr, rng) + breath)
    has_fricative = rng.uniform(size=len(starts)) < 0.4
    hiss = _lookup(_FRICATIVE_ENV, u)
    fricative = (level * has_fricative[idx]) * hiss
    return source, starts + 0.5 * durs, vowels, fricative


def _stft_size(sr: float) -> int:
    """Power-of-two STFT frame of about 23 ms (256 samples at 11 kHz, 1024 at 44.1 kHz)."""
    return int(2 ** np.round(np.log2(0.023 * sr)))


def _stft(x: np.ndarray, size: int) -> np.ndarray:
    """STFT (V, T, size // 2 + 1) of rows ``x`` (V, n): sqrt-Hann frames, hop ``size // 2``.

    Frame k is centred on sample k * hop; T = ceil(n / hop) + 1 frames cover every sample twice.
    The sqrt-Hann window is applied again by :func:`_istft`, and the squared (plain, periodic)
    Hann windows at 50 % overlap sum to exactly one, so _istft(_stft(x)) == x.
    """
    hop = size // 2
    frames = -(-x.shape[-1] // hop) + 1
    padded = np.pad(x, [(0, 0), (hop, (frames + 1) * hop - hop - x.shape[-1])])
    windows = np.lib.stride_tricks.sliding_window_view(padded, size, axis=-1)[:, ::hop]
    return np.fft.rfft(windows[:, :frames] * _sqrt_hann(size), axis=-1)


def _istft(spec: np.ndarray, size: int, n: int) -> np.ndarray:
    """Inverse of :func:`_stft`: rows (V, n) by windowed overlap-add, with no Python frame loop.

    Even and odd frames do not overlap among themselves, so each set is one reshape.
    """
    hop = size // 2
    frames = np.fft.irfft(spec, n=size, axis=-1) * _sqrt_hann(size)  # (V, T, size)
    count = frames.shape[1]
    out = np.zeros((frames.shape[0], (count + 2) * hop))
    for parity in (0, 1):
        chunk = frames[:, parity::2].reshape(frames.shape[0], -1)
        out[:, parity * hop : parity * hop + chunk.shape[1]] += chunk
    return out[:, hop : hop + n]


def _sqrt_hann(size: int) -> np.ndarray:
    """Square root of the periodic Hann window of ``size`` samples."""
    return np.sqrt(0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(size) / size))


def _formant_filter(
    sources: np.ndarray, knots: list[tuple[np.ndarray, np.ndarray]], sr: float
) -> np.ndarray:
    """Filter each row of ``sources`` (V, n) by its own moving cascade of formant resonances.

    ``knots[v] = (times (S,) in s, formants (S, 3) in Hz)``: talker v's F1..F3 targets, linearly
    interpolated between knots. The filtering is done frame by frame in the STFT domain (23 ms
    frames, 50 % overlap), where the cascade's magnitude response
    prod_i F_i^2 / sqrt((F_i^2 - f^2)^2 + (B_i f)^2) is evaluated at each frame's formants:
    a time-varying filter with no per-sample Python work.
    """
    n = sources.shape[-1]
    size = _stft_size(sr)
    spec = _stft(sources, size)  # (V, T, F)
    times = np.arange(spec.shape[1]) * (size // 2) / sr
    freqs = np.fft.rfftfreq(size, 1.0 / sr)
    formants = np.stack(
        [np.stack([np.interp(times, kt, kf[:, i]) for i in range(3)]) for kt, kf in knots]
    )  # (V, 3, T)
    # float32 is ample for a magnitude response and halves the memory traffic of this step;
    # frequencies in kHz keep the products of three squared denominators in float32 range.
    f2 = ((formants[:, :, :, None] / 1000.0) ** 2).astype(np.float32)  # (V, 3, T, 1)
    fb = freqs / 1000.0  # (F,)
    fb2 = (fb**2).astype(np.float32)
    damp = ((_FORMANT_BANDWIDTHS[None, :, None, None] / 1000.0 * fb) ** 2).astype(np.float32)
    # One square root for the whole cascade: prod(F^2) / sqrt(prod(denominator^2)).
    den = np.prod((f2 - fb2) ** 2 + damp, axis=1)  # (V, T, F)
    gain = np.prod(f2, axis=1) / np.sqrt(den)
    return _istft(spec * gain, size, n)


# Talkers are synthesised at about 11 kHz, where voiced speech has nearly all its energy, and
# upsampled by an integer factor: at 44.1 kHz a quarter of the work. Fricatives are made at the
# full rate so consonant hiss still reaches 6-9 kHz.
_TALKER_RATE_HZ = 11025.0


def _reduced_rate(n: int, sr: float) -> tuple[int, float, int]:
    """Integer decimation ``factor``, reduced ``rate`` (Hz, >= _TALKER_RATE_HZ) and length."""
    factor = max(1, int(sr // _TALKER_RATE_HZ))
    return factor, sr / factor, -(-n // factor)


def _upsample(x: np.ndarray, factor: int, n: int) -> np.ndarray:
    """``x`` upsampled by an integer ``factor`` (polyphase anti-imaging filter), cut to ``n``."""
    if factor == 1:
        return x[:n]
    return signal.resample_poly(x, factor, 1)[:n]


def _talkers(n: int, sr: int, rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` overlapping talkers (n,) at rate ``sr``, each drawn as in :func:`_voice`."""
    factor, rate, n_low = _reduced_rate(n, sr)
    sources = np.empty((count, n_low))
    fricative = np.zeros(n_low)
    knots = []
    for v in range(count):
        sources[v], times, formants, hiss = _voice(n_low, rate, rng)
        knots.append((times, formants))
        fricative += hiss
    voiced = _upsample(_formant_filter(sources, knots, rate).sum(axis=0), factor, n)
    fricative = np.repeat(fricative, factor)[:n]
    noise = fricative * rng.standard_normal(n)
    hiss = _highpass(_lowpass(noise, rng.uniform(5000.0, 8000.0), sr, order=4), 2500.0, sr, order=4)
    # Scale the hiss by its RMS while it sounds (not over the whole clip, where it is mostly
    # silent): a fricative sits ~10 dB below the vowels around it.
    active = fricative > 0.5 * fricative.max() if fricative.max() > 0 else fricative > 0
    hiss_rms = float(np.sqrt(np.mean(hiss[active] ** 2))) if np.any(active) else 1.0
    return _unit(voiced) + 0.3 * hiss / max(hiss_rms, 1e-12)


def _speech_babble(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Speech babble: 2-6 talkers with syllable-rate envelopes and moving vowel formants.

    Parameters drawn: talker count 2-6, then per talker as in :func:`_voice`.
    """
    return _talkers(n, sr, rng, int(rng.integers(2, 7)))


def _clap(sr: float, rng: np.random.Generator) -> np.ndarray:
    """One hand clap: 2-4 micro-bursts of noise 3-8 ms apart, then a 6-20 ms decay tail."""
    length = int(0.12 * sr)
    out = np.zeros(length)
    offset = 0
    for _ in range(int(rng.integers(1, 4))):
        _add_grain(out, offset, rng.standard_normal(int(0.002 * sr)) * rng.uniform(0.4, 0.8))
        offset += int(rng.uniform(0.003, 0.008) * sr)
    tail = rng.standard_normal(length) * _decay_env(length, sr, 0.0005, rng.uniform(0.006, 0.02))
    _add_grain(out, offset, tail)
    return out


def _clap_times(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Clap onsets (s): steady clapping, or a repeated random rhythm on an 8th-note grid."""
    t0 = _first_onset(rng, seconds)
    if rng.uniform() < 0.4:
        period = 1.0 / rng.uniform(1.8, 4.5)
        count = int(seconds / period) + 2
        jitter = 0.03 * period * rng.standard_normal(count)
        return t0 + np.arange(count) * period + jitter
    step = 60.0 / rng.uniform(90.0, 150.0) / 2.0
    pattern = rng.uniform(size=8) < 0.55
    pattern[0] = True
    bars, times, t = int(rng.integers(1, 4)), [], t0
    while t < seconds:
        for _ in range(bars):
            times.extend(t + step * np.flatnonzero(pattern))
            t += 8 * step
        t += rng.uniform(0.5, 2.0)  # a breath between phrases
    times = np.array(times)
    return times + 0.004 * rng.standard_normal(times.size)


def _hand_claps(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Hand claps: short band-passed noise bursts from 1-2 clappers in a random rhythm.

    Parameters drawn: rhythm (steady 1.8-4.5 claps/s, or an 8-step pattern at 90-150 BPM
    repeated 1-3 bars with pauses), clapper count 1-2 (second 5-25 ms late), band centre
    900-2200 Hz, bandwidth 1-2 octaves, micro-burst count and decay per clap.
    """
    seconds = n / sr
    out = np.zeros(n)
    times = _clap_times(rng, seconds)
    for clapper in range(int(rng.integers(1, 3))):
        lag = 0.0 if clapper == 0 else rng.uniform(0.005, 0.025)
        centre = rng.uniform(900.0, 2200.0)
        half_band = 2 ** (rng.uniform(1.0, 2.0) / 2)
        dry = np.zeros(n)
        for onset in times:
            _add_grain(dry, int((onset + lag) * sr), rng.uniform(0.7, 1.0) * _clap(sr, rng))
        out += rng.uniform(0.6, 1.0) * _bandpass(dry, centre / half_band, centre * half_band, sr)
    return out


def _kick(sr: float, rng: np.random.Generator) -> np.ndarray:
    """Kick drum: a sine whose pitch falls from 120-180 Hz to 45-60 Hz, plus a beater click."""
    length = int(0.5 * sr)
    t = np.arange(length) / sr
    f_hi, f_lo = rng.uniform(120.0, 180.0), rng.uniform(45.0, 60.0)
    freq = f_lo + (f_hi - f_lo) * np.exp(-t / 0.035)
    body = np.sin(_phase(freq, sr)) * _decay_env(length, sr, 0.001, rng.uniform(0.12, 0.3))
    click = _highpass(
        rng.standard_normal(length) * _decay_env(length, sr, 0.0002, 0.002), 1500.0, sr
    )
    return body + 0.3 * click


def _snare(sr: float, rng: np.random.Generator) -> np.ndarray:
    """Snare drum: a 180-240 Hz shell tone plus a band of rattling wire noise."""
    length = int(0.4 * sr)
    t = np.arange(length) / sr
    tone = np.sin(2 * np.pi * rng.uniform(180.0, 240.0) * t) * _decay_env(length, sr, 0.001, 0.05)
    wires = _bandpass(rng.standard_normal(length), 1000.0, 9000.0, sr) * _decay_env(
        length, sr, 0.001, rng.uniform(0.06, 0.15)
    )
    return 0.6 * tone + 1.5 * wires


def _hat(sr: float, rng: np.random.Generator, decay: float) -> np.ndarray:
    """Hi-hat: six inharmonic square-ish tones plus noise, high-passed, decaying in ``decay`` s.

    The classic analogue hat mixes six detuned square waves; here each has only its first three
    odd harmonics (a naive square wave would alias), which keeps the metallic clang.
    """
    length = int(min(5 * decay, 1.0) * sr)
    t = np.arange(length) / sr
    odd = np.array([1.0, 0.0, 1.0 / 3.0, 0.0, 1.0 / 5.0])
    metal = sum(
        _harmonic_stack(2 * np.pi * f * t, odd, f, sr)
        for f in rng.uniform(200.0, 600.0) * np.array([1.0, 1.47, 1.65, 1.94, 2.52, 2.78])
    )
    raw = 0.5 * metal + rng.standard_normal(length)
    shaped = _highpass(raw, min(7000.0, 0.3 * sr), sr, order=4)
    return shaped * _decay_env(length, sr, 0.0005, decay)


def _drum_pattern(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One bar of 16 sixteenth steps: velocity (0 = silent) per instrument."""
    kick = np.zeros(16)
    kick[0] = 1.0
    extra = rng.choice([3, 6, 8, 10, 11, 14], size=int(rng.integers(1, 4)), replace=False)
    kick[extra] = rng.uniform(0.7, 1.0, extra.size)
    snare = np.where(rng.uniform(size=16) < 0.1, rng.uniform(0.2, 0.4, 16), 0.0)
    snare[[4, 12]] = 1.0
    hats = np.zeros(16)
    step = 1 if rng.uniform() < 0.4 else 2
    hats[::step] = rng.uniform(0.5, 0.8, 16 // step)
    hats[::4] = 1.0
    open_hat = np.zeros(16)
    if rng.uniform() < 0.4:
        open_hat[14] = 0.8
        hats[14] = 0.0
    return {"kick": kick, "snare": snare, "hat": hats, "open_hat": open_hat}


def _drum_kit(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Drum kit: kick, snare and hi-hats playing a random one-bar groove at a random tempo.

    Parameters drawn: tempo 70-160 BPM, swing 0-15 % of a 16th, groove (kick placements,
    ghost snares, 8th or 16th hats, open hat), a snare fill every 4th bar (50 %), humanised
    timing (3 ms) and velocity, drum tunings and decays.
    """
    seconds = n / sr
    step = 60.0 / rng.uniform(70.0, 160.0) / 4.0
    swing = rng.uniform(0.0, 0.15) * step
    groove = _drum_pattern(rng)
    fills = rng.uniform() < 0.5
    sounds = {
        "kick": _kick(sr, rng),
        "snare": _snare(sr, rng),
        "hat": _hat(sr, rng, rng.uniform(0.015, 0.04)),
        "open_hat": _hat(sr, rng, rng.uniform(0.15, 0.3)),
    }
    bars = int(np.ceil(seconds / (16 * step))) + 1
    t0 = _first_onset(rng, seconds, 0.2)
    grid = t0 + np.arange(bars * 16) * step + np.where(np.arange(bars * 16) % 2 == 1, swing, 0.0)
    out = np.zeros(n)
    for name, sound in sounds.items():
        vel = np.tile(groove[name], bars)
        if fills and name == "snare":
            for bar in range(3, bars, 4):
                vel[bar * 16 + 12 : bar * 16 + 16] = rng.uniform(0.6, 1.0, 4)
        hit = vel > 0
        times = grid[hit] + 0.003 * rng.standard_normal(int(hit.sum()))
        gains = vel[hit] * rng.uniform(0.85, 1.0, int(hit.sum()))
        out += _place(n, times, gains, sound, sr)
    return out


def _ks_delay(f0: float, sr: float) -> tuple[int, float]:
    """Integer part N and fraction d of the Karplus-Strong loop: N + 0.5 + d = sr / f0."""
    period = sr / f0
    n_int = int(np.floor(period - 0.5))
    return n_int, period - 0.5 - n_int


def _karplus_strong(
    f0: float, length: int, sr: float, t60: float, excitation: np.ndarray
) -> np.ndarray:
    """Karplus-Strong plucked string of pitch ``f0`` Hz, ``length`` samples, decay ``t60`` s.

    The loop is y[m] = g * (w0 y[m-N] + w1 y[m-N-1] + w2 y[m-N-2]) with the two-tap averager
    (0.5, 0.5) convolved with a linear-interpolation fractional delay (1-d, d), so the loop delay
    N + 0.5 + d equals sr/f0 exactly (:func:`_ks_delay`). Every lag is >= N, so one whole period
    of N samples is computed per vectorised step (no per-sample Python loop). ``excitation``
    (N,) is the initial string shape: it fills the first period.
    """
    n_int, d = _ks_delay(f0, sr)
    if excitation.shape != (n_int,):
        raise InputError(
            f"excitation must have one period ({n_int} samples), got {excitation.shape}"
        )
    w0, w1, w2 = 0.5 * (1.0 - d), 0.5, 0.5 * d
    # Loss per trip so the fundamental decays by 60 dB in t60 s: the averager already loses
    # |H(f0)| per trip (a lot for high notes), so only the remainder is applied as a gain.
    w = 2.0 * np.pi * f0 / sr
    loop_gain = abs(w0 + w1 * np.exp(-1j * w) + w2 * np.exp(-2j * w))
    g = min(10.0 ** (-3.0 / (f0 * t60)) / loop_gain, 0.9999)
    pad = 2
    periods = int(np.ceil(length / n_int)) + 1
    y = np.zeros(pad + periods * n_int)
    y[pad : pad + n_int] = excitation
    for k in range(1, periods):
        s = pad + k * n_int
        prev = y[s - n_int - 2 : s]
        y[s : s + n_int] = g * (w0 * prev[2:] + w1 * prev[1:-1] + w2 * prev[:-2])
    return y[pad : pad + length]


def _pluck(
    f0: float,
    length: int,
    sr: float,
    t60: float,
    bright: float,
    pick: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """One plucked note (length,): KS string excited by low-passed noise with a pick comb.

    ``bright`` (Hz) low-passes the initial noise (a soft finger vs a hard pick) and ``pick``
    (0..0.5, fraction of the string length) notches the harmonics a pluck at that point cannot
    excite.
    """
    n_int, _ = _ks_delay(f0, sr)
    exc = _lowpass(rng.uniform(-1.0, 1.0, n_int), bright, sr)
    exc = exc - np.roll(exc, max(1, int(pick * n_int)))
    return _karplus_strong(f0, length, sr, t60, exc - exc.mean())


def _plucked_string(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Plucked string: Karplus-Strong notes of a random melody in a pentatonic scale.

    Parameters drawn: key (root 80-250 Hz), beat 0.25-0.7 s, note lengths 1/2/3 beats, melody
    as a random walk over 2 octaves, 20 % chance of a strummed 2-3 note chord, decay T60 0.8-3 s,
    pluck brightness (excitation low-pass 1.5-8 kHz) and pick position 0.1-0.3.
    """
    seconds = n / sr
    root = rng.uniform(80.0, 250.0)
    scale = np.array([0, 2, 4, 7, 9, 12, 14, 16, 19, 21, 24])  # major pentatonic, 2 octaves
    beat = rng.uniform(0.25, 0.7)
    t60 = rng.uniform(0.8, 3.0)
    bright = rng.uniform(1500.0, 8000.0)
    pick = rng.uniform(0.1, 0.3)
    body_f = rng.uniform(90.0, 250.0)
    out = np.zeros(n)
    degree = int(rng.integers(0, scale.size))
    t = _first_onset(rng, seconds)
    while t < seconds:
        chord = [degree] + ([degree + 2, degree + 4] if rng.uniform() < 0.2 else [])
        for j, deg in enumerate(chord):
            f0 = min(root * 2 ** (scale[min(deg, scale.size - 1)] / 12.0), 0.1 * sr)
            ring = int(min(seconds - t, 1.3 * t60) * sr) + 1
            note = _pluck(f0, ring, sr, t60, bright, pick, rng) * rng.uniform(0.6, 1.0)
            _add_grain(out, int((t + 0.02 * j) * sr), note)
        t += beat * int(rng.choice([1, 1, 2, 3]))
        degree = int(np.clip(degree + rng.integers(-3, 4), 0, scale.size - 1))
    # A wooden body adds a low resonance under the string.
    return out + 0.3 * _resonator(out, body_f, 3.0, sr)


def _bubbles(n: int, sr: float, rng: np.random.Generator, rate: float) -> np.ndarray:
    """Bubble sounds (n,): exponentially decaying sine chirps rising in pitch (van den Doel).

    Each bubble has a pitch f0 500-4000 Hz (log-uniform), damping d = 0.043 f0 + 0.0014 f0^1.5
    (1/s), a rise of 10-60 % over its first time constant, and lasts 3.5 / d seconds. Bubbles
    are rendered in batches of similar length as (batch, length) matrices and scatter-added.
    """
    seconds = n / sr
    count = int(rng.poisson(rate * seconds))
    f0 = 10 ** rng.uniform(np.log10(500.0), np.log10(4000.0), count)
    f0 = np.minimum(f0, 0.3 * sr)
    damping = 0.043 * f0 + 0.0014 * f0**1.5
    rise = rng.uniform(0.1, 0.6, count) * damping  # relative pitch rise per second
    amp = rng.lognormal(0.0, 0.5, count) * (f0 / 1000.0) ** -0.5  # big bubbles are louder
    start = rng.integers(0, n, count)
    order = np.argsort(damping)[::-1]  # shortest bubbles first, then longer batches
    out = np.zeros(n)
    for batch in np.array_split(order, max(1, count // 256)):
        if batch.size == 0:
            continue
        length = int(np.ceil(3.5 / damping[batch].min() * sr))
        t = np.arange(length) / sr
        phase = 2 * np.pi * f0[batch, None] * (t + 0.5 * rise[batch, None] * t * t)
        grains = amp[batch, None] * np.exp(-damping[batch, None] * t) * np.sin(phase)
        idx = start[batch, None] + np.arange(length)
        keep = idx < n
        out += np.bincount(idx[keep], weights=grains[keep], minlength=n)
    return out


def _running_water(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Running water: many short rising bubble chirps over a band-passed rushing noise bed.

    Parameters drawn: bubble rate 80-300 /s, noise bed band 200-600 Hz to 1.5-4 kHz and level
    0.3-0.8, slow flow fluctuation.
    """
    rate = rng.uniform(80.0, 300.0)
    low, high = rng.uniform(200.0, 600.0), rng.uniform(1500.0, 4000.0)
    bed_level = rng.uniform(0.3, 0.8)
    bubbles = _bubbles(n, sr, rng, rate)
    flow = 1.0 + 0.25 * np.tanh(_smooth_noise(rng, n, sr, 2.0))
    bed = _unit(_bandpass(rng.standard_normal(n), low, high, sr)) * flow
    return _unit(bubbles) + bed_level * bed


def _alarm_beeps(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Alarm beeps: gated square or sine tones, continuous or in groups, maybe two-tone.

    Parameters drawn: pitch 900-3200 Hz, waveform (square 60 % / sine), beep period 0.2-1.2 s
    and duty cycle 0.2-0.7, group pattern (continuous, or 2-4 beeps then a 0.8-2 s pause),
    30 % two-tone alternating with a second pitch 0.75-0.9 x the first, 3 ms gate ramps.
    """
    t = np.arange(n) / sr
    f1 = float(_clamp_hz(rng.uniform(900.0, 3200.0), sr))
    f2 = f1 * rng.uniform(0.75, 0.9) if rng.uniform() < 0.3 else f1
    square = rng.uniform() < 0.6
    period = rng.uniform(0.2, 1.2)
    on = period * rng.uniform(0.2, 0.7)
    if rng.uniform() < 0.5:
        group, pause = int(rng.integers(2, 5)), rng.uniform(0.8, 2.0)
    else:
        group, pause = 1, 0.0
    cycle = group * period + pause
    since = t - _first_onset(rng, n / sr, 0.2)
    u_cycle = since % cycle
    beep = np.floor(u_cycle / period)  # beep index inside the group
    u = u_cycle - beep * period  # time since this beep's start
    ramp = 0.003
    gate = np.where((beep < group) & (u < on), np.clip(np.minimum(u, on - u) / ramp, 0.0, 1.0), 0.0)
    # Two-tone units alternate pitch from one beep to the next, across groups too.
    count = np.floor(since / cycle) * group + beep
    freq = np.where(count % 2 == 1, f2, f1)
    phase = _phase(freq, sr)
    if square:  # band-limited square: odd harmonics 1/k up to the anti-alias limit
        amps = np.array([1.0 / k if k % 2 else 0.0 for k in range(1, 16)])
        tone = _harmonic_stack(phase, amps, max(f1, f2), sr)
    else:
        tone = np.sin(phase)
    return tone * gate


def _cheer_swells(n: int, sr: float, rng: np.random.Generator) -> np.ndarray:
    """Gain curve (n,) of 1-4 cheering swells: linear rise, hold, exponential decay.

    Each swell rises over 0.3-1 s, holds 0.5-2 s, decays over 1-3 s and peaks at 1.5-3 x the
    babble level; overlapping swells take the louder of the two.
    """
    seconds = n / sr
    t = np.arange(n) / sr
    swell = np.zeros(n)
    for _ in range(int(rng.integers(1, 5))):
        start = rng.uniform(-0.5, max(seconds - 1.0, 0.0))
        rise, hold, fall = rng.uniform(0.3, 1.0), rng.uniform(0.5, 2.0), rng.uniform(1.0, 3.0)
        x = t - start
        shape = np.where(
            x < rise,
            np.clip(x / rise, 0.0, 1.0),
            np.where(x < rise + hold, 1.0, np.exp(-(x - rise - hold) / (fall / 3.0))),
        )
        swell = np.maximum(swell, shape * rng.uniform(1.5, 3.0))
    return swell


def _crowd_bed(n: int, sr: float, rng: np.random.Generator) -> np.ndarray:
    """Everything in a crowd but the near talkers (n,): content below 4 kHz, any rate >= 8 kHz.

    A murmur of distant voices (speech-band noise at syllable-rate modulation, 0.6 x the
    babble level) and, inside the cheer swells, an 'ahh' (noise through F1 700, F2 1200,
    F3 2600 Hz), 3-6 whooping voices gliding around 250-450 Hz, and applause.
    """
    murmur_env = 1.0 + 0.5 * np.tanh(_smooth_noise(rng, n, sr, 8.0))
    murmur = _unit(_bandpass(rng.standard_normal(n), 250.0, 3000.0, sr)) * murmur_env
    swell = _cheer_swells(n, sr, rng)
    noise = rng.standard_normal(n)
    ahh = sum(
        _resonator(noise, f, 4.0, sr) * g for f, g in ((700.0, 1.0), (1200.0, 0.7), (2600.0, 0.3))
    )
    whoops = np.zeros(n)
    for _ in range(int(rng.integers(3, 7))):
        glide = rng.uniform(250.0, 450.0) * (1.0 + 0.3 * np.tanh(_smooth_noise(rng, n, sr, 1.5)))
        whoops += _harmonic_stack(_phase(glide, sr), np.array([1.0, 0.5, 0.25, 0.12]), 600.0, sr)
    cheer = _unit(ahh) + 0.5 * _unit(whoops) + 0.8 * _unit(_applause(n, sr, rng))
    return 0.6 * murmur + swell * cheer


def _crowd(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Crowd: dense babble of many talkers plus cheering swells with whoops and applause.

    Parameters drawn: 6-10 near talkers (as in :func:`_voice`) over a murmur bed, and the cheer
    swells of :func:`_crowd_bed` (1-4 swells, 3-6 whoopers, applause 30-80 claps/s). The bed is
    synthesised at about 11 kHz and upsampled, as for the talkers.
    """
    babble = _talkers(n, sr, rng, int(rng.integers(6, 11)))
    factor, rate, n_low = _reduced_rate(n, sr)
    bed = _upsample(_crowd_bed(n_low, rate, rng), factor, n)
    return _unit(babble) + bed


def _applause(n: int, sr: float, rng: np.random.Generator) -> np.ndarray:
    """Applause (n,): 30-80 claps/s at random times, each a 5-15 ms band-passed noise burst."""
    seconds = n / sr
    count = int(rng.uniform(30.0, 80.0) * seconds)
    length = int(0.03 * sr)
    burst = rng.standard_normal(length) * _decay_env(length, sr, 0.0005, 0.008)
    train = _place(n, rng.uniform(0, seconds, count), rng.uniform(0.5, 1.0, count), burst, sr)
    return _bandpass(train, 800.0, 3500.0, sr)


SYNTHESIZERS: dict[str, Synth] = {
    "dog_bark": _dog_bark,
    "siren": _siren,
    "rain": _rain,
    "wind": _wind,
    "birdsong": _birdsong,
    "footsteps": _footsteps,
    "church_bell": _church_bell,
    "car_engine": _car_engine,
    "helicopter": _helicopter,
    "speech_babble": _speech_babble,
    "hand_claps": _hand_claps,
    "drum_kit": _drum_kit,
    "plucked_string": _plucked_string,
    "running_water": _running_water,
    "alarm_beeps": _alarm_beeps,
    "crowd": _crowd,
}
"""Raw synthesiser per class: ``(n_samples, sample_rate_hz, rng) -> (n,)`` float64 at any level.

Use :func:`synthesize_source` for finished clips (DC removed, faded, loudness-normalised)."""


# ---------------------------------------------------------------------------------------------
# Conditioning and the public entry point.
# ---------------------------------------------------------------------------------------------


def _edge_window(n: int, sr: float) -> np.ndarray:
    """Raised-cosine fade-in and fade-out of FADE_SECONDS (at most a quarter of the clip each)."""
    ramp = min(int(FADE_SECONDS * sr), n // 4)
    window = np.ones(n)
    if ramp > 0:
        # Samples (i + 1) / (ramp + 1) so no sample is exactly zero and tiny clips keep content.
        fade = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp) + 1) / (ramp + 1))
        window[:ramp] = fade
        window[n - ramp :] = fade[::-1]
    return window


def _condition(raw: np.ndarray, sr: float, gain_db: float) -> np.ndarray:
    """DC-free, edge-faded, peak-normalised copy of ``raw`` (n,) at PEAK_DBFS + ``gain_db``."""
    x = np.asarray(raw, dtype=np.float64)
    if x.size >= 64:
        x = _highpass(x, DC_CUTOFF_HZ, sr)
    window = _edge_window(x.size, sr)
    x = x * window
    # Removing the mean shaped like the window keeps the fades intact and the mean exactly zero.
    x = x - window * (x.sum() / window.sum())
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak == 0.0:
        return x
    return x * (10.0 ** ((PEAK_DBFS + gain_db) / 20.0) / peak)


@functools.lru_cache(maxsize=256)
def typical_power_db(name: str, seconds: float, sample_rate: int, draws: int = 8) -> float:
    """The class's typical mean power in dB re full scale 1: 10 log10 of the mean over
    ``draws`` seeded instances of :func:`synthesize_source` of mean(x^2). Deterministic
    (instance i of class c draws from ``default_rng([i, class index])``); cached."""
    if name not in SYNTHESIZERS:
        raise InputError(f"unknown sound class {name!r}; known: {', '.join(SOUND_CLASSES)}")
    code = SOUND_CLASSES.index(name)
    powers = [
        float(
            np.mean(
                synthesize_source(name, seconds, sample_rate, np.random.default_rng([i, code])) ** 2
            )
        )
        for i in range(int(draws))
    ]
    return float(10.0 * np.log10(max(float(np.mean(powers)), 1e-30)))


def synthesize_source(
    name: str, seconds: float, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """Synthesise one random instance of sound class ``name``.

    Args:
        name: one of :data:`~swansphere_training.corpus.classes.SOUND_CLASSES`.
        seconds: clip duration in seconds (> 0).
        sample_rate: sample rate in Hz, an integer >= 16000 (22050 and 44100 are the presets).
        rng: source of all randomness; the same seed gives bit-identical output.

    Returns:
        Mono float64 signal of shape ``(round(seconds * sample_rate),)``: finite, zero mean,
        20 ms raised-cosine fades at both ends, peak at ``PEAK_DBFS + CLASS_GAIN_DB[name]`` dBFS.

    Raises:
        InputError (a ValueError): unknown class name (the message lists the known ones), a
            non-positive or non-finite duration, a sample rate below 16 kHz, or an ``rng`` that
            is not a ``numpy.random.Generator``.
    """
    if name not in SYNTHESIZERS:
        raise InputError(f"unknown sound class {name!r}; known: {', '.join(SOUND_CLASSES)}")
    if not np.isfinite(seconds) or seconds <= 0:
        raise InputError(f"seconds must be a positive finite duration, got {seconds!r}")
    if int(sample_rate) != sample_rate or sample_rate < MIN_SAMPLE_RATE:
        raise InputError(
            f"sample_rate must be an integer >= {MIN_SAMPLE_RATE} Hz, got {sample_rate!r}"
        )
    if not isinstance(rng, np.random.Generator):
        raise InputError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    sr = int(sample_rate)
    n = round(seconds * sr)
    if n < 1:
        raise InputError(f"seconds={seconds!r} at {sr} Hz gives no samples")
    raw = SYNTHESIZERS[name](n, sr, rng)
    if raw.shape != (n,) or not np.all(np.isfinite(raw)):
        # A synthesiser bug, not bad input: fail loudly rather than write NaNs into a corpus.
        raise RuntimeError(f"{name} synthesiser gave shape {raw.shape} or non-finite samples")
    return _condition(raw, sr, CLASS_GAIN_DB[name])
