"""Streaming generation: a runtime holding the bundle's networks, and sessions that take
frames and captions as they arrive and yield FOA patch by patch.

Data flow per patch t (DESIGN.md section 2): conditioning (video tokens of the frame
aligned with patch t and, for generators that take it, SVAC's saliency of that frame
against the frames of the recent patches; caption tokens) -> Spatial LM step (KV cache)
-> LocDiT sampling (Euler, cosine schedule, three-way guidance) -> direction lock (toward
the LM's estimate, or the video direction cue's with ``direction_source = "video"``) ->
level lock (``level_lock``: the patch as loud as the cue estimates) -> streaming VAE
decode -> FOA chunk (AmbiX W, Y, Z, X, SN3D, at the VAE's sample rate).

Offline generation (:meth:`GeneratorRuntime.generate`) encodes all frames in one batch,
runs the same patch sampler, and decodes the whole latent sequence at once; a session fed
the same frames, caption and seed produces the same audio (to float rounding).

Documented fallbacks: an empty or whitespace caption means "no caption"; captions longer
than the model's ``max_text_tokens`` tokens are truncated (with a warning in
``session.warnings``); frames of any size are resized to the video encoder's canvas;
patches before the first frame use the earliest frame received; neither video nor
caption is an error.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch

from swansphere.device import torch_device
from swansphere.errors import InputError
from swansphere.models.bundle import Bundle, load_bundle, resolve_bundle_spec
from swansphere.models.direction import DirectionTracker, VideoDirectionCue
from swansphere.models.generator import (
    CONDITIONS,
    GENERATOR_PRESETS,
    Conditioning,
    KVCache,
    SpatialGenerator,
    cosine_schedule,
    guidance_rows,
    level_lock_gain,
    patch_flux,
    scale_level,
    steer_intensity,
)
from swansphere.models.svac import SVAC, SVAC_PRESETS
from swansphere.models.text import CaptionEncoder, pooled_caption
from swansphere.models.vae import FOAVAE, VAE_PRESETS, StreamingDecoder

from .accel import accelerate
from .conditioning import (
    FrameCues,
    SaliencyWindow,
    frame_cues,
    panorama_canvas,
    panorama_canvases,
    patch_frame_index,
    video_end_s,
    view_to_panorama,
)

if TYPE_CHECKING:
    from .batcher import SessionBatcher

log = logging.getLogger(__name__)

MAX_CAPTION_CHARS = 10_000  # longer captions are refused (the token limit truncates earlier)
_CAPTION_CACHE = 64  # captions whose tokens a runtime keeps


@dataclass(frozen=True)
class SessionConfig:
    """Per-session generation settings; None means the model's default."""

    seed: int = 0
    steps: int | None = None  # Euler steps of the LocDiT sampler (model default: 20)
    guidance_text: float | None = None  # g_text of the three-way guidance
    guidance_video: float | None = None  # g_video
    duration_s: float | None = None  # stop after this much audio (text-only generation)

    def __post_init__(self) -> None:
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise InputError(f"seed must be an integer, got {self.seed!r}")
        if self.steps is not None and not (isinstance(self.steps, int) and 1 <= self.steps <= 1000):
            raise InputError(f"steps must be an integer in [1, 1000], got {self.steps!r}")
        for name in ("guidance_text", "guidance_video"):
            g = getattr(self, name)
            if g is not None and not (
                isinstance(g, (int, float)) and math.isfinite(g) and 0 <= g <= 20
            ):
                raise InputError(f"{name} must be a number in [0, 20], got {g!r}")
        d = self.duration_s
        if d is not None and not (
            isinstance(d, (int, float)) and math.isfinite(d) and 0 < d <= 3600
        ):
            raise InputError(f"duration_s must be in (0, 3600] seconds, got {d!r}")


class GeneratorRuntime:
    """The networks of one bundle (FOA-VAE, SVAC, generator, caption encoder, and the video
    direction cue when the bundle has one), shared by all sessions; inference only: it puts
    the networks it is given in eval mode and folds the VAE's weight norms in place
    (:meth:`FOAVAE.fold_weight_norm`). Load with :meth:`load` (cached per bundle) or
    :meth:`random` (random generator weights, same code path)."""

    _cache: ClassVar[dict[tuple[str, str, str], GeneratorRuntime]] = {}
    _cache_lock = threading.Lock()

    def __init__(
        self,
        vae: FOAVAE,
        svac: SVAC,
        generator: SpatialGenerator,
        name: str,
        device: str | torch.device = "cpu",
        accel: str = "eager",
        direction: VideoDirectionCue | None = None,
    ) -> None:
        gcfg = generator.config
        if gcfg.latent_dim != vae.config.latent_dim:
            raise InputError(
                f"generator latent_dim {gcfg.latent_dim} does not match "
                f"the VAE's {vae.config.latent_dim}"
            )
        if gcfg.video_dim != svac.config.video_dim or gcfg.video_grid != svac.video_encoder.grid:
            raise InputError(
                f"generator video tokens ({gcfg.video_dim}, grid {gcfg.video_grid}) do not match "
                f"SVAC's ({svac.config.video_dim}, grid {svac.video_encoder.grid})"
            )
        if gcfg.direction_lock and not vae.config.direct_path:
            raise InputError(
                "direction_lock steers the VAE's intensity channels, but this VAE has no "
                "direct path (direct_path=false): bundle it with direction_lock=0"
            )
        # (level_lock needs direction_lock, so the direct path is checked above.)
        if gcfg.level_lock and not vae.config.level_path:
            raise InputError(
                "level_lock sets the VAE's level channel, but this VAE has no level path "
                "(level_path=false): bundle it with level_lock=0"
            )
        if gcfg.video_saliency and svac.spatial is None:
            raise InputError(
                "the generator takes SVAC's saliency, but this SVAC has no spatial code"
            )
        if gcfg.direction_source == "video" and direction is None:
            raise InputError(
                "direction_source=video aims the lock at the video direction cue, but this "
                "bundle has none: train one ('swansphere train direction') and add it with "
                "'swansphere bundle --direction RUN', or bundle with direction_source=lm"
            )
        patch_seconds = gcfg.patch_frames * vae.config.hop_length / vae.config.sample_rate
        if direction is not None and not math.isclose(
            direction.config.patch_seconds, patch_seconds, rel_tol=1e-6
        ):
            raise InputError(
                f"the video direction cue was trained for patches of "
                f"{direction.config.patch_seconds:.4f} s; this generator's are "
                f"{patch_seconds:.4f} s"
            )
        self.name = name
        self.device = torch_device(device)
        self.vae = vae.to(self.device).eval().fold_weight_norm()
        self.svac = svac.to(self.device).eval()
        self.generator = generator.to(self.device).eval()
        self.direction = None if direction is None else direction.to(self.device).eval()
        encoder = None if gcfg.text_encoder == "minilm" else gcfg.text_encoder
        self.text_encoder = CaptionEncoder(encoder, device=self.device)
        if self.text_encoder.dim != gcfg.text_dim:
            raise InputError(
                f"text encoder {self.text_encoder.name_or_path} gives {self.text_encoder.dim}-d "
                f"tokens; the generator was built for {gcfg.text_dim}"
            )
        if self.uses_direction_cue and direction.config.text_dim and not self.cue_reads_captions:
            log.warning(
                "the video direction cue reads %d-d MiniLM captions but this generator's text "
                "encoder is %s (%d-d): the cue runs without captions",
                direction.config.text_dim, gcfg.text_encoder, gcfg.text_dim,
            )  # fmt: skip
        self._captions: OrderedDict[str, tuple[torch.Tensor, torch.Tensor, bool]] = OrderedDict()
        self._lock = threading.Lock()
        # Last: the LM step's example input (aot, tensorrt) encodes an empty caption.
        self.accel = accelerate(self, accel)

    # --- construction ----------------------------------------------------------------

    @classmethod
    def load(
        cls, spec: str | Path = "default", device: str = "cpu", accel: str = "eager"
    ) -> GeneratorRuntime:
        """The runtime of bundle ``spec`` (default | PATH | models:/NAME@ALIAS), cached."""
        key = (str(resolve_bundle_spec(spec)), str(device), accel)
        with cls._cache_lock:
            if key not in cls._cache:
                cls._cache[key] = cls.from_bundle(load_bundle(spec), device, accel)
            return cls._cache[key]

    @classmethod
    def from_bundle(
        cls, bundle: Bundle, device: str = "cpu", accel: str = "eager"
    ) -> GeneratorRuntime:
        if "generator" not in bundle.components:
            raise InputError(
                f"bundle {bundle.path} has no generator component; train one with "
                "'swansphere train generator' and add it with 'swansphere bundle --generator'"
            )
        direction = bundle.build("direction") if "direction" in bundle.components else None
        return cls(
            bundle.build("vae"), bundle.build("svac"), bundle.build("generator"),
            str(bundle.path), device, accel, direction,
        )  # fmt: skip

    @classmethod
    def random(
        cls,
        preset: str = "tiny",
        seed: int = 0,
        base: str = "default",
        device: str = "cpu",
        accel: str = "eager",
    ) -> GeneratorRuntime:
        """A generator of ``preset`` at random weights (seeded): the real code path before
        a generator is trained, and the paper-scale benchmarks. ``tiny`` uses the VAE and
        SVAC of bundle ``base``; S, M and L get the paper-preset VAE and SVAC, also random."""
        if preset not in GENERATOR_PRESETS:
            raise InputError(
                f"unknown generator preset {preset!r}; choose one of {', '.join(GENERATOR_PRESETS)}"
            )
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            if preset == "tiny":
                bundle = load_bundle(base)
                vae, svac = bundle.build("vae"), bundle.build("svac")
            else:
                vae, svac = FOAVAE(VAE_PRESETS["paper"]), SVAC(SVAC_PRESETS["paper"])
            generator = SpatialGenerator(GENERATOR_PRESETS[preset])
            # Zero-initialised layers (adaLN, output) would make an untrained LocDiT
            # predict zero velocity and ignore its conditioning: give them small weights.
            with torch.no_grad():
                for p in generator.parameters():
                    if p.ndim > 0 and not p.any():
                        p.normal_(0.0, 0.02)
        return cls(vae, svac, generator, f"random:{preset}", device, accel)

    # --- properties -------------------------------------------------------------------

    @property
    def sample_rate(self) -> int:
        """FOA sample rate of the generated audio (the VAE's)."""
        return self.vae.config.sample_rate

    @property
    def patch_samples(self) -> int:
        """Audio samples per generated patch."""
        return self.generator.config.patch_frames * self.vae.config.hop_length

    @property
    def patch_seconds(self) -> float:
        return self.patch_samples / self.sample_rate

    @property
    def uses_direction_cue(self) -> bool:
        """Whether the sampler's direction lock aims at the video direction cue."""
        cfg = self.generator.config
        return cfg.direction_source == "video" and bool(cfg.direction_lock)

    @property
    def cue_reads_captions(self) -> bool:
        """Whether the video direction cue reads the caption: a cue with ``text_dim``, which
        learnt MiniLM's sentence space, and an LM that reads MiniLM captions too (another
        encoder's embeddings would mean nothing to the cue)."""
        cue, cfg = self.direction, self.generator.config
        return (
            self.uses_direction_cue
            and bool(cue.config.text_dim)
            and cfg.text_encoder == "minilm"
            and cue.config.text_dim == cfg.text_dim
        )

    @property
    def canvas_size(self) -> tuple[int, int]:
        """(height, width) of the equirectangular canvas the video encoder takes."""
        return self.svac.video_encoder.frame_size

    # --- conditioning ----------------------------------------------------------------

    def caption_tokens(self, text: str | None) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """Caption tokens (1, L, text_dim), mask (1, L) and whether the caption was cut
        short; ``None`` or empty text gives an all-False mask. Cached per text."""
        text = "" if text is None else text
        if not isinstance(text, str):
            raise InputError(f"caption must be text, got {type(text).__name__}")
        if len(text) > MAX_CAPTION_CHARS:
            raise InputError(f"caption is {len(text)} characters; the limit is {MAX_CAPTION_CHARS}")
        with self._lock:
            if text in self._captions:
                self._captions.move_to_end(text)
                return self._captions[text]
        limit = self.generator.config.max_text_tokens
        tokens, mask = self.text_encoder.encode_tokens([text], limit)
        truncated = (
            bool(text.strip())
            and len(self.text_encoder._tokenizer(text.strip())["input_ids"]) > limit
        )
        entry = (tokens, mask, truncated)
        with self._lock:
            self._captions[text] = entry
            while len(self._captions) > _CAPTION_CACHE:
                self._captions.popitem(last=False)
        return entry

    def frame_to_canvas(self, frame: np.ndarray) -> torch.Tensor:
        """An RGB frame (H, W, 3) -> uint8 tensor (3, h, w) at the canvas size."""
        return panorama_canvas(frame, self.canvas_size)

    def frame_cues(self, canvases: torch.Tensor) -> FrameCues:
        """What the generator takes of canvases (N, 3, h, w): video tokens (N, G, video_dim),
        the spatial code's patch embeddings when the generator takes the saliency, and the
        canvases when the video direction cue reads them."""
        saliency = self.generator.config.video_saliency
        canvases = canvases.to(self.device)
        cues = frame_cues(self.svac, canvases, patch_embeddings=saliency)
        if self.uses_direction_cue:
            cues = FrameCues(cues.tokens, cues.patch_embeddings, canvases)
        return cues

    def video_cues(self, frames: np.ndarray, fps: float, n_patches: int) -> FrameCues:
        """The cues (n_patches of them) of the frame conditioning each patch of offline
        generation from video frames (N, H, W, 3) at ``fps``: frame i is shown at i / fps
        (:func:`patch_frame_index`); each frame used is encoded once, 64 at a time."""
        canvases = panorama_canvases(frames, self.canvas_size)
        index = patch_frame_index(n_patches, self.patch_seconds, np.arange(len(frames)) / fps)
        used, inverse = np.unique(index, return_inverse=True)
        cues = FrameCues.cat(
            [self.frame_cues(canvases[used[i : i + 64]]) for i in range(0, len(used), 64)]
        )
        return cues[torch.from_numpy(inverse)]

    # --- sessions and offline generation ---------------------------------------------

    def session(
        self, config: SessionConfig | None = None, batcher: SessionBatcher | None = None
    ) -> GeneratorSession:
        """A new stream; with ``batcher`` (a :class:`SessionBatcher` of this runtime) its
        patches are sampled in batches with the other sessions of that batcher."""
        return GeneratorSession(self, config or SessionConfig(), batcher)

    def warm_up(self) -> float:
        """Run once what a live stream runs, so that no session pays for lazy set-up
        (first-call kernels and allocations, the caption cache): one patch of a session
        with a blank frame. Under ``accel compile`` it also runs each graph torch.compile
        specialises (under ``aot`` and ``tensorrt``, the packages' and engines' first
        calls), which would
        otherwise compile (seconds) in the middle of a live stream: the LM step with no
        caption and with one, on an empty, a growing and a full KV cache (``lm_window``
        patches, then the trim), and the LocDiT for one session's rows and, where sessions
        are batched, for two. Returns the seconds taken."""
        started = time.perf_counter()
        blank = np.zeros((*self.canvas_size, 3), dtype=np.uint8)
        session = self.session(SessionConfig(steps=1))
        try:
            session.set_panorama(blank, 0.0)
            session.next_chunk()
        finally:
            session.close()
        if self.accel.mode in ("compile", "aot", "tensorrt"):
            cues = self.frame_cues(self.frame_to_canvas(blank)[None])
            captions = [self.caption_tokens(None), self.caption_tokens("warm-up caption")]
            samplers = [PatchSampler(self, SessionConfig(steps=1)) for _ in range(2)]
            for i in range(self.generator.config.lm_window + 2):
                text, mask, _ = captions[i % 2]
                samplers[0].step(cues, text, mask)
            if batchable(self):
                text, mask, _ = captions[1]
                requests = [s.prepare(cues, text, mask) for s in samplers]
                for sampler, x in zip(samplers, sample_patches(self, requests), strict=True):
                    sampler.finish(x)
        return time.perf_counter() - started

    def generate(
        self,
        frames: np.ndarray | None,
        fps: float | None,
        caption: str | None,
        duration_s: float | None = None,
        config: SessionConfig | None = None,
    ) -> np.ndarray:
        """Offline generation: FOA (4, T) float32 at :attr:`sample_rate`.

        frames: (N, H, W, 3) uint8 equirectangular video at ``fps`` or None (text only,
        then ``duration_s`` or ``config.duration_s`` sets the length). The whole video
        is encoded in one batch and the latents decoded in one pass.
        """
        return self.generate_traced(frames, fps, caption, duration_s, config)[0]

    def generate_traced(
        self,
        frames: np.ndarray | None,
        fps: float | None,
        caption: str | None,
        duration_s: float | None = None,
        config: SessionConfig | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`generate`, and where the LM meant the sound to be: the mean over the
        patches of its direction head's unit estimates (3,) (x, y, z; length <= 1) for the
        fully conditioned row (:attr:`PatchSampler.lm_direction`), for telling the LM's
        estimate apart from the LocDiT's rendering of it (``eval generator``)."""
        config = config or SessionConfig()
        duration_s = duration_s or config.duration_s
        if caption is not None and not isinstance(caption, str):
            raise InputError(f"caption must be text, got {type(caption).__name__}")
        caption_present = bool(caption and caption.strip())
        if frames is not None:
            frames = np.asarray(frames)
            if frames.ndim != 4 or len(frames) == 0:
                raise InputError(f"video must be frames (N, H, W, 3), got shape {frames.shape}")
            if fps is None or not (math.isfinite(fps) and fps > 0):
                raise InputError(f"video needs a positive frame rate, got {fps!r}")
            duration_s = duration_s or len(frames) / fps
        elif not caption_present:
            raise InputError("nothing to generate from: give a video, a caption, or both")
        if not duration_s:
            raise InputError("text-only generation needs a duration (duration_s)")
        n_patches = math.ceil(duration_s / self.patch_seconds - 1e-9)
        video = None if frames is None else self.video_cues(frames, fps, n_patches)
        sampler = PatchSampler(self, config, trace_direction=True)
        text = self.caption_tokens(caption)
        latents = []
        for t in range(n_patches):
            latents.append(
                sampler.step(None if video is None else video[t : t + 1], text[0], text[1])
            )
        z = self.generator.denormalise(torch.cat(latents, dim=1))
        with torch.no_grad():
            audio = self.vae.decode(z)[0]
        audio = audio[:, : round(duration_s * self.sample_rate)].cpu().numpy().astype(np.float32)
        return audio, sampler.lm_direction.cpu().double().numpy() / n_patches


@dataclass
class PatchRequest:
    """One session's patch between :meth:`PatchSampler.prepare` and
    :meth:`PatchSampler.finish`: what the LocDiT Euler loop needs, nothing else.

    noise: (1, patch_frames, latent_dim) the patch at flow time 0 (the session's own seeded
    draw); h: (R, lm_dim) the LM output of the R guidance rows the LocDiT runs
    (:func:`guidance_rows`: all three of full, text, none with video and a caption, two
    with one of them) and ``weights`` (R,) the weights of their velocities;
    context_k / context_v: (dit_layers, 1, heads, context frames, head_dim) keys and values
    of the boundary context, shared by the rows and all steps.
    """

    noise: torch.Tensor
    h: torch.Tensor
    weights: torch.Tensor
    context_k: torch.Tensor
    context_v: torch.Tensor
    steps: int
    schedule: torch.Tensor  # (steps + 1,) flow times
    runtime: GeneratorRuntime
    prepared_at: float = 0.0  # time.perf_counter() when prepare() ended
    batch: int = 1  # sessions in the LocDiT batch that sampled this patch
    urgent: bool = False  # a session's first patch: batches holding it do not wait (TTFC)


class PatchSampler:
    """The autoregressive core shared by sessions and offline generation: one LM step and
    one LocDiT sampling per patch, the three guidance conditions as three batch rows.

    A patch is :meth:`prepare` (LM step, boundary context, initial noise), the Euler loop
    (:func:`sample_patches`, which can run several sessions' patches as one batch) and
    :meth:`finish` (the patch joins the history); :meth:`step` does all three for one.
    """

    def __init__(
        self, runtime: GeneratorRuntime, config: SessionConfig, trace_direction: bool = False
    ) -> None:
        g = runtime.generator
        self.runtime, self.model = runtime, g
        cfg = g.config
        self.steps = config.steps or cfg.steps
        self.g_text = cfg.guidance_text if config.guidance_text is None else config.guidance_text
        self.g_video = (
            cfg.guidance_video if config.guidance_video is None else config.guidance_video
        )
        self.schedule = cosine_schedule(self.steps).to(runtime.device)
        self.noise = torch.Generator(device=runtime.device).manual_seed(config.seed)
        self.cache = KVCache(cfg.lm_layers)
        self.saliency = (
            SaliencyWindow(runtime.svac, cfg.saliency_window) if cfg.video_saliency else None
        )
        self.history: list[torch.Tensor] = []  # normalised patches (1, f, D), newest last
        self.patch = 0
        self.timings: dict[str, float] = {}
        self._text_key: torch.Tensor | None = None
        self._text_state: tuple = ()
        self.last_batch = 1  # sessions in the LocDiT batch of the last patch
        # With trace_direction (evaluation, not sessions): the sum over the finished patches
        # of the LM direction head's unit estimate (x, y, z) for the fully conditioned row,
        # i.e. where the LM meant each patch to sound from. direction_lock also reads it.
        self.trace_direction = trace_direction
        self.direction_lock = float(cfg.direction_lock)
        self.lm_history = cfg.lm_history
        self.lm_direction = torch.zeros(3, device=runtime.device)
        # With direction_source "video", the cue's running direction is the lock's target
        # for patches with a frame (and no caption, unless the cue reads captions); the
        # LM's estimate is still traced.
        self.tracker = DirectionTracker(runtime.direction) if runtime.uses_direction_cue else None
        self._lm_estimate: torch.Tensor | None = None  # the pending patch's
        self._estimate: torch.Tensor | None = None  # where the lock turns the pending patch
        # level_lock: the cue's loudness estimate of the pending patch (None: the patch
        # keeps its own), and the sums over the locked patches of the generated flux
        # lengths and the cue's, whose ratio turns the cue's relative loudness into the
        # generated audio's units as the clip goes on.
        self.level_lock = float(cfg.level_lock)
        self._cue_loudness: float | None = None
        self._flux_sum = self._cue_sum = 0.0
        # Whether any patch so far had video, and a caption: until one has, the guidance
        # rows without it have had the same inputs all along (the LM's cache included), so
        # the LocDiT runs them once (guidance_rows).
        self._conditioned = (False, False)
        self._pending: PatchRequest | None = None
        self._undo: tuple = ()  # state before the pending patch's prepare (see abort)

    @torch.inference_mode()
    def step(
        self, video: FrameCues | None, text: torch.Tensor, text_mask: torch.Tensor
    ) -> torch.Tensor:
        """Generate the next patch: normalised latents (1, patch_frames, latent_dim).

        video: the cues of the aligned frame (:meth:`GeneratorRuntime.frame_cues`, N = 1),
        or None; text (1, L, text_dim) and text_mask (1, L) of the current caption (all
        False: no caption). With the saliency input, each call's frame joins the window
        of recent frames that the next patches' saliency departs from."""
        request = self.prepare(video, text, text_mask)
        try:
            x = sample_patches(self.runtime, [request])[0]
        except BaseException:
            self.abort()
            raise
        return self.finish(x)

    @torch.inference_mode()
    def prepare(
        self, video: FrameCues | None, text: torch.Tensor, text_mask: torch.Tensor
    ) -> PatchRequest:
        """The LM step of the next patch (arguments as :meth:`step`), its boundary context
        and its initial noise; then :func:`sample_patches` and :meth:`finish`, or
        :meth:`abort`. One patch at a time."""
        if self._pending is not None:
            raise RuntimeError("the previous patch is not finished (finish() or abort())")
        if self.tracker is not None and video is not None and video.canvases is None:
            raise InputError("the video direction cue needs the frame's canvas in its cues")
        g, cfg, dev = self.model, self.model.config, self.runtime.device
        start = time.perf_counter()
        self._undo = (list(self.cache.keys), list(self.cache.values), self.cache.length,
                      self.noise.get_state(),
                      None if self.saliency is None else self.saliency.state(),
                      None if self.tracker is None else self.tracker.state(),
                      self._conditioned)  # fmt: skip
        has_text = bool(text_mask.any())
        self._conditioned = (self._conditioned[0] or video is not None,
                             self._conditioned[1] or has_text)  # fmt: skip
        rows = len(CONDITIONS)
        video_present = torch.tensor([video is not None, False, False], device=dev)
        text_present = torch.tensor([has_text, has_text, False], device=dev)
        vid = sal = None
        if video is not None:
            vid = video.tokens[:, None].expand(rows, 1, -1, -1)
            if self.saliency is not None:
                sal = self.saliency.push(video)[:, None].expand(rows, 1, -1)
        cond = Conditioning(
            vid, video_present, text.expand(rows, -1, -1), text_mask.expand(rows, -1), text_present
        )
        prev = (
            self.history[-1]
            if self.history
            else torch.zeros(1, cfg.patch_frames, cfg.latent_dim, device=dev)
        )
        history_present = (
            None if self.lm_history else torch.zeros(rows, dtype=torch.bool, device=dev)
        )
        lm_in = g.lm.inputs(
            prev[:, None].expand(rows, 1, -1, -1), vid, video_present, self.patch,
            history_present, sal,
        )  # fmt: skip
        text_ctx, text_ctx_mask, text_kv = self._text(cond, text)
        h = self.runtime.accel.lm(lm_in, text_ctx, text_ctx_mask, self.cache, text_kv)[:, 0]
        if self.trace_direction or self.direction_lock:
            estimate = g.direction(h[0]).float()
            self._lm_estimate = self._estimate = estimate / estimate.norm().clamp_min(1e-8)
        if self.tracker is not None and video is not None:
            # Every frame joins the cue's window. A cue that reads captions gets the
            # patch's; otherwise a captioned patch keeps the LM's estimate, which reads it.
            reads = self.runtime.cue_reads_captions
            caption = pooled_caption(text, text_mask)[0] if reads and has_text else None
            estimate = self.tracker.push(video.canvases[0], caption)
            cue = self.tracker.direction
            if (reads or not has_text) and bool(cue.norm() > 0):
                self._estimate = cue / cue.norm()
                if self.level_lock:
                    self._cue_loudness = float(estimate.norm())
        lm_done = time.perf_counter()
        context, valid = self._context()
        ctx_k, ctx_v = g.dit.context_kv(context, valid)  # once per patch, shared by the steps
        x = torch.randn(1, cfg.patch_frames, cfg.latent_dim, generator=self.noise, device=dev)
        if batchable(self.runtime):  # rows with the same condition all along run once
            used, weights = guidance_rows(*self._conditioned, self.g_text, self.g_video)
        else:  # a TensorRT LocDiT is built for all three rows
            used, weights = guidance_rows(True, True, self.g_text, self.g_video)
        self._pending = PatchRequest(
            x, h[list(used)], torch.tensor(weights, device=dev), ctx_k, ctx_v, self.steps,
            self.schedule, self.runtime, time.perf_counter(), urgent=self.patch == 0,
        )  # fmt: skip
        self.timings = {"lm_ms": 1e3 * (lm_done - start)}
        return self._pending

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """The pending patch's sampled latents x (1, patch_frames, latent_dim) join the
        history, turned first with ``direction_lock`` (:func:`steer_intensity`) toward the
        LM's direction estimate, or the video direction cue's (``direction_source``);
        returns them as they joined (what to decode). The next patch can be prepared."""
        request = self._pending
        if request is None:
            raise RuntimeError("no patch to finish: prepare() first")
        cfg = self.model.config
        if tuple(x.shape) != (1, cfg.patch_frames, cfg.latent_dim):
            raise ValueError(f"a patch is (1, {cfg.patch_frames}, {cfg.latent_dim}), got {x.shape}")
        if self.direction_lock:
            g = self.model
            raw = x * g.latent_std + g.latent_mean
            raw = steer_intensity(raw, self._estimate, self.direction_lock)
            if self.level_lock and self._cue_loudness is not None:
                raw = self._lock_level(raw)
            x = (raw - g.latent_mean) / g.latent_std
        self.history.append(x)
        del self.history[: -cfg.context_patches]
        if self.trace_direction:
            self.lm_direction = self.lm_direction + self._lm_estimate
        self._estimate = self._lm_estimate = self._cue_loudness = None
        self.patch += 1
        self.last_batch = request.batch
        self._pending, self._undo = None, ()
        self.timings["dit_ms"] = 1e3 * (time.perf_counter() - request.prepared_at)
        return x

    def abort(self) -> None:
        """Drop the pending patch (its sampling failed): the LM cache and the noise stream
        are as before its :meth:`prepare`, so the session can go on."""
        if self._pending is None:
            return
        keys, values, length, noise_state, saliency, tracker, conditioned = self._undo
        self.cache.keys, self.cache.values, self.cache.length = keys, values, length
        self.noise.set_state(noise_state)
        if self.saliency is not None:
            self.saliency.restore(saliency)
        if self.tracker is not None:
            self.tracker.restore(tracker)
        self._conditioned = conditioned
        self._estimate = self._lm_estimate = self._cue_loudness = None
        self._pending, self._undo = None, ()

    def _lock_level(self, raw: torch.Tensor) -> torch.Tensor:
        """Denormalised patch latents raw (1, F, D) made ``level_lock`` of the way as loud
        as the video cue estimates (:func:`level_lock_gain`)."""
        channel = self.runtime.vae.config.learned_dim  # the level channel follows them
        flux = float(patch_flux(raw[0], channel).norm())
        self._flux_sum += flux
        self._cue_sum += self._cue_loudness
        scale = self._flux_sum / self._cue_sum if self._cue_sum > 0 else 0.0
        gain = level_lock_gain(flux, self._cue_loudness, scale, self.level_lock)
        return scale_level(raw, channel, gain)

    def _text(self, cond: Conditioning, text: torch.Tensor) -> tuple:
        """Caption keys, mask and per-layer keys/values, recomputed only when the caption
        tensor changes (captions are cached per text by the runtime)."""
        if self._text_key is not text:
            ctx, mask = self.model.lm.text_context(cond)
            self._text_state = (ctx, mask, self.model.lm.text_kv(ctx))
            self._text_key = text
        return self._text_state

    def _context(self) -> tuple[torch.Tensor, torch.Tensor]:
        cfg, dev = self.model.config, self.runtime.device
        c, f = cfg.context_patches, cfg.patch_frames
        have = self.history[-c:]
        missing = c - len(have)
        zeros = torch.zeros(1, f, cfg.latent_dim, device=dev)
        context = torch.cat([zeros] * missing + have, dim=1)
        valid = torch.zeros(1, c * f, dtype=torch.bool, device=dev)
        valid[:, missing * f :] = True
        return context, valid


def batchable(runtime: GeneratorRuntime) -> bool:
    """Whether the runtime's LocDiT takes any number of rows: a TensorRT engine is built
    for the three rows of one session (see :mod:`.accel`), so there each patch runs alone."""
    return runtime.accel.mode != "tensorrt"


@torch.inference_mode()
def sample_patches(
    runtime: GeneratorRuntime, requests: Sequence[PatchRequest]
) -> list[torch.Tensor]:
    """The Euler loops of several sessions' patches as one: normalised latents
    (1, patch_frames, latent_dim) per request, in order.

    Requests with the same step count run together, 3 guidance rows each (B = 3N rows per
    LocDiT call), each with its own h, boundary context, noise and guidance scales; the
    result equals running each request alone (to float rounding). Groups of different
    step counts run one after the other.
    """
    if any(r.runtime is not runtime for r in requests):
        raise ValueError("every request must come from this runtime's sessions")
    out: list[torch.Tensor | None] = [None] * len(requests)
    groups: dict[int, list[int]] = {}
    for i, r in enumerate(requests):
        groups.setdefault(r.steps, []).append(i)
    size = None if batchable(runtime) else 1
    for index in groups.values():
        for start in range(0, len(index), size or len(index)):
            part = index[start : start + (size or len(index))]
            for i, x in zip(part, _euler([requests[i] for i in part], runtime), strict=True):
                out[i] = x
                requests[i].batch = len(part)
    return out  # type: ignore[return-value]


def _euler(requests: list[PatchRequest], runtime: GeneratorRuntime) -> list[torch.Tensor]:
    """One Euler loop over N requests of equal step count -> N patches (1, f, D)."""
    first, n = requests[0], len(requests)
    schedule, steps = first.schedule, first.steps
    h = first.h if n == 1 else torch.cat([r.h for r in requests])  # (rows, lm_dim)
    rows = h.shape[0]
    weights = torch.cat([r.weights for r in requests])[:, None, None]  # (rows, 1, 1)
    # The adaLN modulations depend on h and the flow time only: all steps' in one call.
    taus = schedule[:steps, None].expand(steps, rows)
    blocks, final = runtime.generator.dit.modulation_of(h.expand(steps, -1, -1), taus)
    dts = schedule[1 : steps + 1] - schedule[:steps]
    if n == 1:  # the single-session path: the context as broadcast views
        ctx_k = first.context_k.expand(-1, rows, -1, -1, -1)
        ctx_v = first.context_v.expand(-1, rows, -1, -1, -1)
        return [runtime.accel.euler(first.noise, blocks, final, ctx_k, ctx_v, dts, weights)]
    dev = first.noise.device
    counts = torch.tensor([r.h.shape[0] for r in requests], device=dev)  # rows per request
    owner = torch.repeat_interleave(torch.arange(n, device=dev), counts)
    # (layers, 1, heads, ctx, head_dim) per request -> (layers, rows, heads, ctx, head_dim)
    ctx_k = torch.cat([r.context_k for r in requests], dim=1).index_select(1, owner)
    ctx_v = torch.cat([r.context_v for r in requests], dim=1).index_select(1, owner)
    x = torch.cat([r.noise for r in requests])  # (N, f, D)
    x = runtime.accel.stepwise(x, blocks, final, ctx_k, ctx_v, dts, weights, owner)
    return list(x.split(1))


class GeneratorSession:
    """One stream: frames and captions in as they arrive, FOA chunks out patch by patch.

    Not thread-safe by itself: one caller drives a session (the server serialises each
    session's calls). See the module docstring for fallbacks.
    """

    def __init__(
        self,
        runtime: GeneratorRuntime,
        config: SessionConfig,
        batcher: SessionBatcher | None = None,
    ) -> None:
        if batcher is not None and batcher.runtime is not runtime:
            raise ValueError("the batcher serves another runtime")
        self.runtime = runtime
        self.config = config
        self.batcher = batcher
        self._sampler = PatchSampler(runtime, config)
        self._decoder = StreamingDecoder(runtime.vae)
        self._frames: list[tuple[float, torch.Tensor]] = []  # (capture time, canvas), sorted
        self._cues: dict[int, FrameCues] = {}  # id(canvas) -> its cues
        self._caption = runtime.caption_tokens(None)
        self._end_s: float | None = config.duration_s
        self._emitted = 0  # samples returned so far
        self.warnings: list[str] = []
        self.stats: dict[str, float] = {}
        self.closed = False
        self._started = time.perf_counter()  # of the patch in progress
        self._video_ms = 0.0

    @property
    def sample_rate(self) -> int:
        return self.runtime.sample_rate

    @property
    def patch_samples(self) -> int:
        return self.runtime.patch_samples

    @property
    def patch_seconds(self) -> float:
        return self.runtime.patch_seconds

    @property
    def time_s(self) -> float:
        """Audio time generated so far (the start of the next patch)."""
        return self._sampler.patch * self.patch_seconds

    @property
    def finished(self) -> bool:
        return self.closed or (self._end_s is not None and self._emitted >= self._end_samples())

    def _end_samples(self) -> int:
        return round(self._end_s * self.sample_rate)

    # --- input ---------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.closed:
            raise InputError("the session is closed")

    def _time(self, time_s: float | None) -> float:
        if time_s is None:
            return self.time_s
        if not (isinstance(time_s, (int, float)) and math.isfinite(time_s) and time_s >= 0):
            raise InputError(f"frame time must be a finite number of seconds >= 0, got {time_s!r}")
        return float(time_s)

    def _add_frame(self, canvas: torch.Tensor, time_s: float) -> None:
        if self._frames and time_s < self._frames[-1][0]:
            raise InputError(
                f"frame time {time_s:.3f} s is earlier than the previous frame's "
                f"{self._frames[-1][0]:.3f} s; frames must arrive in capture order"
            )
        self._frames.append((time_s, canvas))
        # Keep the newest frame at or before the next patch's midpoint and all newer ones.
        mid = self.time_s + 0.5 * self.patch_seconds
        keep = max(0, int(np.searchsorted([t for t, _ in self._frames], mid, side="right")) - 1)
        for _, old in self._frames[:keep]:
            self._cues.pop(id(old), None)
        del self._frames[:keep]

    def set_panorama(self, frame: np.ndarray, time_s: float | None = None) -> None:
        """An equirectangular RGB frame (H, W, 3) captured at ``time_s`` (default: now)."""
        self._check_open()
        self._add_frame(self.runtime.frame_to_canvas(frame), self._time(time_s))

    def set_view(
        self,
        frame: np.ndarray,
        orientation: np.ndarray,
        hfov_deg: float,
        time_s: float | None = None,
    ) -> None:
        """A field-of-view frame plus the camera's orientation quaternion (w, x, y, z) and
        horizontal field of view, projected into the panorama canvas (unseen: black)."""
        self._check_open()
        h, w = self.runtime.canvas_size
        canvas, _ = view_to_panorama(frame, orientation, hfov_deg, w, h)
        self._add_frame(torch.from_numpy(canvas).permute(2, 0, 1).contiguous(), self._time(time_s))

    def set_caption(self, text: str | None) -> None:
        """The caption from the next patch on; None or empty removes it."""
        self._check_open()
        tokens, mask, truncated = self.runtime.caption_tokens(text)
        if truncated:
            limit = self.runtime.generator.config.max_text_tokens
            self.warnings.append(f"caption longer than {limit} tokens: truncated")
        self._caption = (tokens, mask, truncated)

    def end_video(self, at_s: float | None = None) -> None:
        """The video has ended: no more frames. With the session's ``duration_s`` set, that
        stays the end and the last frame holds until then (as in offline generation, where
        a requested duration outlasts a shorter video); otherwise generation stops at
        ``at_s`` seconds, by default one frame interval after the last frame (or now
        without frames)."""
        self._check_open()
        if self.config.duration_s is not None:
            return
        if at_s is None:
            at_s = video_end_s([t for t, _ in self._frames], self.patch_seconds)
        self._end_s = self._time(at_s)

    # --- output --------------------------------------------------------------------

    def _frame_for_patch(self) -> FrameCues | None:
        if not self._frames:
            return None
        times = np.array([t for t, _ in self._frames])
        index = int(patch_frame_index(self._sampler.patch + 1, self.patch_seconds, times)[-1])
        canvas = self._frames[index][1]
        if id(canvas) not in self._cues:
            self._cues[id(canvas)] = self.runtime.frame_cues(canvas[None])
        return self._cues[id(canvas)]

    def next_chunk(self) -> np.ndarray | None:
        """The next patch of FOA (4, patch_samples) float32, or None once finished (the
        last chunk is cut at the end time). With a :class:`SessionBatcher`, the patch's
        LocDiT sampling runs in a batch with other sessions' patches."""
        if self.batcher is None:
            request = self.prepare_chunk()
            return None if request is None else self._sample_and_finish(request)
        with self.batcher.patch():
            request = self.prepare_chunk()
            return None if request is None else self._sample_and_finish(request)

    def _sample_and_finish(self, request: PatchRequest) -> np.ndarray:
        try:
            if self.batcher is None:
                x = sample_patches(self.runtime, [request])[0]
            else:
                x = self.batcher.sample(request)
        except BaseException:
            self.abort_chunk()
            raise
        return self.finish_chunk(x)

    def prepare_chunk(self) -> PatchRequest | None:
        """First half of :meth:`next_chunk`: video tokens of the aligned frame and the LM
        step. Returns the request to sample (alone or batched with other sessions' by
        :func:`sample_patches`) and hand to :meth:`finish_chunk`, or None once finished."""
        if self.finished:
            return None
        has_caption = bool(self._caption[1].any())
        if not self._frames and not has_caption:
            raise InputError("nothing to generate from yet: send a frame or a caption first")
        self._started = time.perf_counter()
        video = self._frame_for_patch()
        self._video_ms = 1e3 * (time.perf_counter() - self._started)
        return self._sampler.prepare(video, self._caption[0], self._caption[1])

    def abort_chunk(self) -> None:
        """Drop the prepared patch (its sampling failed); the session can go on."""
        self._sampler.abort()

    def finish_chunk(self, x: torch.Tensor) -> np.ndarray:
        """Second half of :meth:`next_chunk`: the sampled latents x (1, patch_frames,
        latent_dim) of the prepared request -> FOA (4, patch_samples) float32."""
        x = self._sampler.finish(x)
        decode_start = time.perf_counter()
        audio = self._decoder.decode_chunk(self.runtime.generator.denormalise(x))[0]
        chunk = audio.cpu().numpy().astype(np.float32)
        if self._end_s is not None:
            chunk = chunk[:, : max(0, self._end_samples() - self._emitted)]
        self._emitted += chunk.shape[1]
        end = time.perf_counter()
        self.stats = {
            "video_ms": self._video_ms,
            **self._sampler.timings,
            "decode_ms": 1e3 * (end - decode_start),
            "total_ms": 1e3 * (end - self._started),
            "patch": float(self._sampler.patch),
            "batch": float(self._sampler.last_batch),
        }
        return chunk

    def close(self) -> None:
        """Free the session's state (frames, caches, decoder state)."""
        self.closed = True
        self._frames.clear()
        self._cues.clear()
        self._sampler.cache = KVCache(0)
        self._decoder.reset()


__all__ = [
    "GeneratorRuntime",
    "GeneratorSession",
    "PatchRequest",
    "PatchSampler",
    "SessionConfig",
    "batchable",
    "sample_patches",
]
