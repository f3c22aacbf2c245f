"""Tests for swansphere.captions: regions, motion, template captions, parsing, builders."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from swansphere.captions import (
    MAX_LABEL_CHARS,
    CallableCaptioner,
    Captioner,
    SceneDescription,
    SceneObject,
    SourceDescription,
    TemplateCaptioner,
    TrackPoint,
    caption_scene_objects,
    coarse_region,
    describe_motion,
    direction_phrase,
    label_phrase,
    region_mentions,
    regions_in_caption,
    scene_from_clip_metadata,
    scene_from_objects,
    scene_from_trajectories,
)
from swansphere.errors import InputError

LABELS = [
    "siren",
    "dog_bark",
    "rain",
    "helicopter",
    "church bell",
    "footsteps",
    "hand_claps",
    "people talking",
    "a car engine",
    "PoliceSiren",
    "unknown_thing",
    "birdsong",
]


def _point(t: float, az_deg: float, el_deg: float, distance: float | None = None) -> TrackPoint:
    return TrackPoint(t, math.radians(az_deg), math.radians(el_deg), distance)


def _static_scene(label: str, az_deg: float, el_deg: float, duration: float = 10.0):
    return SceneDescription(duration, [SourceDescription(label, [_point(0.0, az_deg, el_deg)])])


def _unit(az_deg: float, el_deg: float) -> np.ndarray:
    az, el = math.radians(az_deg), math.radians(el_deg)
    return np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])


def _slerp_track(u0, u1, n=11, duration=10.0, distances=None):
    """Great-circle path between unit vectors u0 and u1 (not antipodal), n points."""
    omega = math.acos(float(np.clip(u0 @ u1, -1, 1)))
    points = []
    for k, f in enumerate(np.linspace(0, 1, n)):
        u = (math.sin((1 - f) * omega) * u0 + math.sin(f * omega) * u1) / math.sin(omega)
        az, el = math.atan2(u[1], u[0]), math.atan2(u[2], math.hypot(u[0], u[1]))
        d = None if distances is None else float(distances[k])
        points.append(TrackPoint(f * duration, az, el, d))
    return points


# ---------------------------------------------------------------- coarse regions


@pytest.mark.parametrize(
    ("az_deg", "el_deg", "region"),
    [
        (0, 0, "front"),
        (90, 0, "left"),
        (-90, 0, "right"),
        (180, 0, "back"),
        (-180, 0, "back"),
        (0, 60, "above"),
        (0, -60, "below"),
        (123, 89, "above"),
        (-40, -90, "below"),
        (360, 0, "front"),  # wrapped
        (-270, 0, "left"),  # wrapped: -270 is +90
        # boundaries (documented): 45 front, 135 left, -45 front, -135 right, el +-45 by azimuth
        (45, 0, "front"),
        (45.001, 0, "left"),
        (135, 0, "left"),
        (135.001, 0, "back"),
        (-45, 0, "front"),
        (-45.001, 0, "right"),
        (-135, 0, "right"),
        (-135.001, 0, "back"),
        (90, 45, "left"),
        (90, 45.001, "above"),
        (180, -45, "back"),
        (180, -45.001, "below"),
    ],
)
def test_coarse_region_reference_values(az_deg, el_deg, region):
    assert coarse_region(math.radians(az_deg), math.radians(el_deg)) == region


def test_coarse_region_rejects_nan():
    with pytest.raises(InputError, match="azimuth"):
        coarse_region(float("nan"), 0.0)


def test_direction_phrases_parse_back_to_their_region_in_every_form():
    rng = np.random.default_rng(7)
    for _ in range(400):
        az, el = rng.uniform(-np.pi, np.pi), np.arcsin(rng.uniform(-1, 1))
        region = coarse_region(az, el)
        for form in ("at", "from", "to"):
            phrase = direction_phrase(az, el, form, rng)
            assert regions_in_caption(phrase) == {region}, (phrase, region)


def test_direction_phrase_finer_wording():
    def phrases(az, el, form="at"):
        return {direction_phrase(math.radians(az), math.radians(el), form, s) for s in range(60)}

    assert "at the front left" in phrases(30, 0)
    assert "behind on the right" in phrases(-150, 0)
    assert phrases(10, 85) <= {
        "directly overhead",
        "overhead",
        "straight above you",
        "high above you",
    }
    assert any(p.endswith("slightly below") for p in phrases(0, -20))
    assert all("slightly" not in p for p in phrases(0, 0))  # centred: no modifier
    with pytest.raises(InputError, match="form"):
        direction_phrase(0.0, 0.0, "into")


# ---------------------------------------------------------------- motion


def test_motion_static_single_point():
    m = describe_motion([_point(0, -100, 10)])
    assert (m.kind, m.start_region, m.end_region, m.distance_trend) == (
        "static",
        "right",
        "right",
        None,
    )
    assert m.excursion_deg == 0.0


def test_motion_static_jitter_keeps_a_real_point_as_dominant():
    rng = np.random.default_rng(0)
    pts = [_point(t, 60 + rng.normal(0, 2), 5 + rng.normal(0, 2)) for t in range(10)]
    m = describe_motion(pts)
    assert m.kind == "static" and m.start_region == "left"
    assert any(m.start_azimuth == p.azimuth for p in pts)


def test_motion_approach():
    pts = [_point(t, 90, 0, 10 - 0.8 * t) for t in range(11)]  # 10 m -> 2 m on the left
    m = describe_motion(pts)
    assert (m.kind, m.start_region, m.distance_trend) == ("static", "left", "approaching")


def test_motion_receding():
    m = describe_motion([_point(0, 0, 0, 2.0), _point(5, 0, 0, 8.0)])
    assert m.distance_trend == "receding"


def test_motion_pass_left_to_right_in_front():
    pts = [_point(t, 90 - 18 * t, 0) for t in range(11)]  # 90 -> -90 through 0
    m = describe_motion(pts)
    assert (m.kind, m.start_region, m.end_region, m.via_region) == (
        "passing",
        "left",
        "right",
        "front",
    )
    assert m.azimuth_travel_deg == pytest.approx(-180.0)


def test_motion_pass_left_to_right_behind():
    pts = [_point(t, 90 + 18 * t, 0) for t in range(11)]  # 90 -> 270 = -90 through 180
    m = describe_motion(pts)
    assert (m.start_region, m.end_region, m.via_region) == ("left", "right", "back")


def test_motion_circling_both_ways():
    ccw = describe_motion([_point(t / 4, 9 * t, 10) for t in range(41)])  # 0 -> 360 deg
    assert (ccw.kind, ccw.rotation, ccw.start_region) == ("circling", "anticlockwise", "front")
    assert ccw.azimuth_travel_deg == pytest.approx(360.0)
    cw = describe_motion([_point(t / 4, 90 - 7.5 * t, 0) for t in range(41)])  # 300 deg clockwise
    assert (cw.kind, cw.rotation, cw.start_region, cw.end_region) == (
        "circling",
        "clockwise",
        "left",
        "back",
    )  # ends at 90 - 300 = -210 = 150 deg


def test_motion_arc_below_circling_threshold_is_a_pass():
    m = describe_motion([_point(t, 25 * t, 0) for t in range(11)])  # 250 deg
    assert m.kind == "passing" and (m.start_region, m.end_region) == ("front", "right")


def test_motion_rising_and_moving_within_a_region():
    rise = describe_motion([_point(t, 0, 8 * t) for t in range(11)])  # el 0 -> 80
    assert (rise.kind, rise.vertical, rise.start_region, rise.end_region) == (
        "passing",
        "rising",
        "front",
        "above",
    )
    wander = describe_motion([_point(t, 60 + 6 * t, 0) for t in range(11)])  # 60 -> 120
    assert (wander.kind, wander.start_region, wander.via_region) == ("moving", "left", None)
    away_back = describe_motion([_point(t, 90 + 20 * min(t, 10 - t), 0) for t in range(11)])
    assert (away_back.kind, away_back.via_region) == ("moving", "back")


def test_motion_passing_by_distance_dip():
    m = describe_motion([_point(t, 90 - 18 * t, 0, abs(5 - t) + 0.5) for t in range(11)])
    assert m.distance_trend == "passing by"


# ---------------------------------------------------------------- template captions


def test_static_captions_round_trip_regions_100_percent():
    """>= 500 random static sources and seeds (plus every boundary): the parser recovers the
    source's coarse region, and no other, from every caption."""
    rng = np.random.default_rng(2024)
    cases = [
        (rng.uniform(-180, 180), math.degrees(np.arcsin(rng.uniform(-1, 1)))) for _ in range(560)
    ]
    cases += [
        (az, el)
        for az in (45, 135, -45, -135, 180, -180, 0, 90, -90, 15, 30, 75)
        for el in (45, -45, 0, 12, 30, -30, 75, 89.9)
    ]
    captioner = TemplateCaptioner()
    hits = 0
    for k, (az, el) in enumerate(cases):
        label = LABELS[k % len(LABELS)]
        scene = _static_scene(label, az, el)
        caption = captioner.caption(scene, np.random.default_rng(k))
        region = coarse_region(math.radians(az), math.radians(el))
        hits += regions_in_caption(caption) == {region}
        assert regions_in_caption(caption) == {region}, (caption, az, el, region)
    assert hits == len(cases)


def test_moving_captions_name_start_then_end():
    rng = np.random.default_rng(5)
    captioner = TemplateCaptioner()
    checked = 0
    for k in range(300):
        az0, az1 = rng.uniform(-180, 180, 2)
        el0, el1 = np.degrees(np.arcsin(rng.uniform(-1, 1, 2)))
        u0, u1 = _unit(az0, el0), _unit(az1, el1)
        if u0 @ u1 < math.cos(math.radians(170)):
            continue  # nearly antipodal: the great circle is ill-defined
        pts = _slerp_track(u0, u1, distances=rng.uniform(1, 10, 11))
        m = describe_motion(pts)
        scene = SceneDescription(10.0, [SourceDescription(LABELS[k % len(LABELS)], pts)])
        mentions = region_mentions(scene_caption := captioner.caption(scene, rng))
        assert mentions[0] == m.start_region, (scene_caption, m)
        if m.kind != "static":
            assert mentions[-1] == m.end_region, (scene_caption, m)
        allowed = {m.start_region, m.end_region, m.via_region}
        assert set(mentions) <= allowed, (scene_caption, m)
        checked += 1
    assert checked > 250


def test_away_and_back_caption_names_start_turn_and_end():
    pts = [_point(t, 90 + 20 * min(t, 10 - t), 0) for t in range(11)]  # left -> back -> left
    scene = SceneDescription(10.0, [SourceDescription("dog", pts)])
    for seed in range(20):
        caption = TemplateCaptioner().caption(scene, seed)
        assert region_mentions(caption) == ["left", "back", "left"], caption


def test_caption_variety():
    scene = _static_scene("dog_bark", 30, 5)
    captions = {TemplateCaptioner().caption(scene, np.random.default_rng(s)) for s in range(50)}
    assert len(captions) >= 20
    verbs = " ".join(captions)
    assert "barks" in verbs and "yelps" in verbs  # family verbs are varied


def test_captions_are_deterministic():
    scene = _static_scene("siren", -120, 0)
    c = TemplateCaptioner()
    assert c.caption(scene) == c.caption(scene)  # rng None: fixed default seed
    assert c.caption(scene, np.random.default_rng(3)) == c.caption(scene, np.random.default_rng(3))
    assert c.caption(scene, 3) == c.caption(scene, np.random.default_rng(3))


def test_two_source_captions_mention_both_labels_and_regions():
    scene = SceneDescription(
        10.0,
        [
            SourceDescription("siren", [_point(0, 170, 0), _point(10, 170, 0)]),
            SourceDescription("dog_bark", [_point(0, -70, 0), _point(10, -70, 0)]),
        ],
    )
    for seed in range(40):
        caption = TemplateCaptioner().caption(scene, np.random.default_rng(seed))
        assert "siren" in caption.lower() and "dog" in caption.lower(), caption
        assert regions_in_caption(caption, ignore=["siren", "dog"]) == {"back", "right"}, caption


def test_sequential_sources_are_told_in_time_order_with_timing():
    scene = SceneDescription(
        10.0,
        [
            SourceDescription("siren", [_point(6, 0, 0), _point(10, 0, 0)]),
            SourceDescription("dog", [_point(0, 90, 0), _point(4, 90, 0)]),
        ],
    )
    early = ("at first", "early on", "first 4 seconds", "first half")
    late = ("after about 6 seconds", "later on", "from about 6 seconds on", "second half")
    for seed in range(30):
        caption = TemplateCaptioner().caption(scene, np.random.default_rng(seed)).lower()
        assert caption.index("dog") < caption.index("siren"), caption
        assert any(p in caption for p in early) and any(p in caption for p in late), caption


def test_timing_phrases_for_first_half():
    scene = SceneDescription(10.0, [SourceDescription("rain", [_point(0, 0, 0), _point(5, 0, 0)])])
    captions = [TemplateCaptioner().caption(scene, s).lower() for s in range(40)]
    phrases = ("at first", "early on", "first 5 seconds", "first half")
    assert all(any(p in c for p in phrases) for c in captions)
    assert any("during the first half" in c for c in captions)


def test_diffuse_source_is_all_around_and_keeps_its_region():
    pts = [TrackPoint(t, math.radians(100), 0.0, None, 0.9) for t in (0.0, 10.0)]
    scene = SceneDescription(10.0, [SourceDescription("rain", pts)])
    for seed in range(20):
        caption = TemplateCaptioner().caption(scene, seed)
        assert "all around" in caption or "surround" in caption
        assert regions_in_caption(caption) == {"left"}


def test_max_sources_counts_the_rest():
    sources = [SourceDescription(f"thing {k}", [_point(0, 30 * k, 0)]) for k in range(8)]
    caption = TemplateCaptioner(max_sources=3).caption(SceneDescription(5.0, sources))
    assert caption.endswith("5 more sounds can be heard.")
    assert sum(f"thing {k}" in caption for k in range(8)) == 3
    with pytest.raises(InputError, match="max_sources"):
        TemplateCaptioner(max_sources=0)


def test_label_phrases():
    assert label_phrase("siren") == "a siren"
    assert label_phrase("a siren") == "a siren"
    assert label_phrase("dog_bark") == "a dog"
    assert label_phrase("DogBark") == "a dog"
    assert label_phrase("footsteps") == "footsteps"
    assert label_phrase("rain") == "rain"
    assert label_phrase("alarm_beeps") == "an alarm"
    assert label_phrase("hand_claps") == "hand claps"
    assert label_phrase("umbrella stand") == "an umbrella stand"
    assert label_phrase("dog_bark", {"dog_bark": "a dog barking"}) == "a dog"
    assert label_phrase("speech_babble", {"speech_babble": "people talking"}) == "people"
    caption = TemplateCaptioner(phrases={"speech_babble": "people talking"}).caption(
        _static_scene("speech_babble", 0, 0)
    )
    assert "people" in caption.lower()
    assert not any(f"people {v}" in caption for v in ("murmurs", "chatters", "is heard"))


def test_unknown_label_uses_fallback_verbs():
    scene = _static_scene("gizmo", 90, 0)
    captions = {TemplateCaptioner().caption(scene, s) for s in range(40)}
    text = " ".join(captions)
    assert "is heard" in text or "sounds" in text or "can be heard" in text


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A dog barks right behind you.", ["back"]),
        ("A car moves back and forth on the left.", ["left"]),
        ("A car passes from the front left to behind on the right.", ["front", "back"]),
        ("A bird sings slightly to the left.", ["left"]),
        ("A bird sings in front, slightly to the left.", ["front"]),
        ("A plane flies overhead.", ["above"]),
        ("Water trickles beneath you.", ["below"]),
        ("Music plays above ear level on the right.", ["right"]),
        ("Rain falls all around.", []),
        ("A siren wails to the right, then it comes back to the left.", ["right", "left"]),
        (
            "Voices ahead; a drum on your right while wind howls from the rear.",
            ["front", "right", "back"],
        ),
        ("The rear door creaks on the left.", ["back", "left"]),
        ("Birdsong drifts from above all the way through.", ["above"]),
        ("Above all, a bell rings in front.", ["front"]),
        ("A car drives round behind you to your right.", ["back", "right"]),
    ],
)
def test_region_mentions_hand_written(text, expected):
    assert region_mentions(text) == expected


def test_region_parser_ignores_labels():
    assert regions_in_caption("The rear door creaks on the left.", ignore=["rear door"]) == {"left"}


# ---------------------------------------------------------------- engine objects


def test_engine_siren_passes_from_left_to_right():
    objects = [{"label": "siren", "position": (0, 5, 0), "velocity": (0, -5, 0)}]
    for duration in (2.0, 5.0):
        scene = scene_from_objects(objects, duration)
        m = describe_motion(scene.sources[0].points)
        assert (m.kind, m.start_region, m.end_region) == ("passing", "left", "right")
        assert m.distance_trend == "passing by"
        for seed in range(20):
            caption = caption_scene_objects(
                objects, rng=np.random.default_rng(seed), duration_s=duration
            )
            assert region_mentions(caption) == ["left", "right"], caption
            assert "siren" in caption


def test_engine_objects_static_and_timed():
    objects = [
        SceneObject("dog_bark", (1.0, 0.0, 0.0)),
        {"label": "helicopter", "position": [0.0, 0.0, 30.0], "start_s": 2.0},
    ]
    scene = scene_from_objects(objects, 4.0)
    assert [s.label for s in scene.sources] == ["dog_bark", "helicopter"]
    assert scene.active_span(1) == (2.0, 4.0)
    assert describe_motion(scene.sources[0].points).start_region == "front"
    assert describe_motion(scene.sources[1].points).start_region == "above"
    assert scene.sources[0].points[0].distance == pytest.approx(1.0)
    caption = caption_scene_objects(objects, rng=np.random.default_rng(0), duration_s=4.0)
    assert "dog" in caption and "helicopter" in caption
    assert regions_in_caption(caption) == {"front", "above"}


@pytest.mark.parametrize(
    ("objects", "match"),
    [
        ([], "empty"),
        ([{"label": "siren", "position": (float("nan"), 0, 0)}], "position"),
        ([{"label": "siren", "position": (1, 0)}], "three numbers"),
        ([{"label": "siren", "position": (1, 0, 0), "velocty": (1, 0, 0)}], "unknown keys"),
        ([{"position": (1, 0, 0)}], "label"),
        ([{"label": "", "position": (1, 0, 0)}], "empty"),
        ([{"label": "hum", "position": (0, 0, 0)}], "listener"),
        ([{"label": "hum", "position": (1, 0, 0), "start_s": 9.0}], "end"),
        ([{"label": "hum", "position": (1, 0, 0), "start_s": 2.0, "end_s": 1.0}], "after"),
        ({"label": "hum", "position": (1, 0, 0)}, "list"),
    ],
)
def test_engine_bad_input(objects, match):
    with pytest.raises(InputError, match=match):
        scene_from_objects(objects, 5.0)


# ---------------------------------------------------------------- plug-in captioner and JSON


def test_callable_captioner_receives_the_json():
    received = []

    def fake_llm(scene_json: dict) -> str:
        received.append(scene_json)
        return "  an LLM caption \n"

    captioner = CallableCaptioner(fake_llm)
    assert isinstance(captioner, Captioner) and isinstance(TemplateCaptioner(), Captioner)
    objects = [{"label": "siren", "position": (0, 5, 0), "velocity": (0, -5, 0)}]
    assert caption_scene_objects(objects, captioner=captioner) == "an LLM caption"
    (data,) = received
    json.dumps(data)  # plain types only
    assert data["duration_s"] == 5.0
    (source,) = data["sources"]
    assert source["label"] == "siren"
    assert source["track"][0]["azimuth_deg"] == pytest.approx(90.0)
    assert source["summary"]["start_region"] == "left"
    assert source["summary"]["end_region"] == "right"
    assert source["summary"]["motion"] == "passing"
    rebuilt = SceneDescription.from_json(data)
    assert rebuilt == scene_from_objects(objects)


def test_callable_captioner_bad_results():
    scene = _static_scene("siren", 0, 0)
    with pytest.raises(InputError, match="non-empty string"):
        CallableCaptioner(lambda d: "  ").caption(scene)
    with pytest.raises(InputError, match="non-empty string"):
        CallableCaptioner(lambda d: None).caption(scene)
    with pytest.raises(InputError, match="callable"):
        CallableCaptioner("not a function")
    data = []
    CallableCaptioner(lambda d: data.append(d) or "x", include_summary=False).caption(scene)
    assert "summary" not in data[0]["sources"][0]


def test_scene_json_round_trip():
    scene = SceneDescription(
        8.0,
        [
            SourceDescription(
                "siren",
                [TrackPoint(0.0, 2.0, 0.1, 3.0, 0.2), TrackPoint(8.0, -1.0, -0.3, 1.5, 0.1)],
            ),
            SourceDescription("rain", [TrackPoint(1.0, 0.5, 0.0)]),
        ],
    )
    text = json.dumps(scene.to_json(include_summary=True))
    back = SceneDescription.from_json(text)
    assert back.duration_s == 8.0 and [s.label for s in back.sources] == ["siren", "rain"]
    for a, b in zip(scene.sources, back.sources, strict=True):
        for p, q in zip(a.points, b.points, strict=True):
            assert (p.t_s, p.distance, p.diffuseness) == (q.t_s, q.distance, q.diffuseness)
            assert q.azimuth == pytest.approx(p.azimuth, abs=1e-12)
            assert q.elevation == pytest.approx(p.elevation, abs=1e-12)
    with pytest.raises(InputError, match="parse"):
        SceneDescription.from_json("{not json")
    with pytest.raises(InputError, match="t_s"):
        SceneDescription.from_json(
            {
                "duration_s": 1,
                "sources": [{"label": "x", "track": [{"azimuth_deg": 0, "elevation_deg": 0}]}],
            }
        )


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: SourceDescription("", [_point(0, 0, 0)]), "empty"),
        (lambda: SourceDescription("   \n", [_point(0, 0, 0)]), "empty"),
        (lambda: SourceDescription("x" * 10_000, [_point(0, 0, 0)]), "10000 characters"),
        (lambda: SourceDescription(42, [_point(0, 0, 0)]), "string"),
        (lambda: SourceDescription("siren\x00", [_point(0, 0, 0)]), "control"),
        (lambda: SourceDescription("___", [_point(0, 0, 0)]), "letter"),
        (lambda: SourceDescription("siren", []), "no track points"),
        (lambda: SourceDescription("siren", [_point(2, 0, 0), _point(1, 0, 0)]), "time order"),
        (lambda: SourceDescription("siren", [(0, 0, 0)]), "TrackPoint"),
        (lambda: SceneDescription(10.0, []), "zero sources"),
        (lambda: SceneDescription(0.0, [SourceDescription("a", [_point(0, 0, 0)])]), "> 0"),
        (lambda: SceneDescription(5.0, [SourceDescription("a", [_point(6, 0, 0)])]), "after"),
        (lambda: TrackPoint(0.0, float("nan"), 0.0), "azimuth"),
        (lambda: TrackPoint(0.0, 0.0, 2.0), "elevation"),
        (lambda: TrackPoint(-1.0, 0.0, 0.0), "t_s"),
        (lambda: TrackPoint(0.0, 0.0, 0.0, -2.0), "distance"),
        (lambda: TrackPoint(0.0, 0.0, 0.0, None, 1.5), "diffuseness"),
        (lambda: TrackPoint(0.0, "north", 0.0), "azimuth"),
        (lambda: TemplateCaptioner().caption("scene"), "SceneDescription"),
        (lambda: TemplateCaptioner().caption(_static_scene("a", 0, 0), rng="x"), "rng"),
    ],
)
def test_bad_input_raises_input_error(make, match):
    with pytest.raises(InputError, match=match):
        make()


def test_label_limit_and_whitespace():
    ok = SourceDescription("  police_siren\t ", [_point(0, 0, 0)])
    assert ok.label == "police_siren"
    SourceDescription("x" * MAX_LABEL_CHARS, [_point(0, 0, 0)])


# ---------------------------------------------------------------- DoA trajectories and clips


def _segments(azimuths_deg, diffuseness=0.1):
    return [
        {
            "start_s": float(k),
            "end_s": float(k + 1),
            "azimuth_deg": az,
            "elevation_deg": 0.0,
            "diffuseness": diffuseness,
            "distance": 1.0 + 0.1 * k,
        }
        for k, az in enumerate(azimuths_deg)
    ]


class _TrajectoryLike:
    def __init__(self, segments):
        self._segments = segments

    def to_json(self):
        return self._segments


def test_scene_from_trajectories():
    moving = _segments([90, 60, 30, 0, -30, -60, -90, -90])
    static = _TrajectoryLike(_segments([180] * 8, diffuseness=0.9))
    scene = scene_from_trajectories(["siren", "rain"], [moving, static])
    assert scene.duration_s == 8.0
    siren = scene.sources[0]
    assert [p.t_s for p in siren.points] == [0.0, 0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 8.0]
    assert scene.active_span(0) == (0.0, 8.0)
    m = describe_motion(siren.points)
    assert (m.start_region, m.end_region, m.via_region) == ("left", "right", "front")
    assert describe_motion(scene.sources[1].points).diffuse
    caption = TemplateCaptioner().caption(scene, 1)
    assert regions_in_caption(caption) <= {"left", "front", "right", "back"}
    assert "back" in regions_in_caption(caption)


@pytest.mark.parametrize(
    ("labels", "trajectories", "match"),
    [
        (["a", "b"], [_segments([0])], "2 labels for 1"),
        ([], [], "at least one"),
        (["a"], [[]], "no segments"),
        (["a"], [[{"start_s": 0, "end_s": 1, "azimuth_deg": 0}]], "elevation_deg"),
        (["a"], [_segments([0, 1])[::-1]], "time order"),
        (
            ["a"],
            [[{"start_s": 0, "end_s": 1, "azimuth_deg": float("nan"), "elevation_deg": 0}]],
            "azimuth_deg",
        ),
        ("ab", [_segments([0]), _segments([0])], "one string"),
    ],
)
def test_scene_from_trajectories_bad_input(labels, trajectories, match):
    with pytest.raises(InputError, match=match):
        scene_from_trajectories(labels, trajectories)


def test_scene_from_clip_metadata():
    meta = {
        "id": "train-000001",
        "duration_s": 10.0,
        "sources": [
            {
                "class": "siren",
                "class_id": 1,
                "motion": "moving",
                "level_db": 0.0,
                "trajectory": {
                    "t": [0.0, 5.0, 10.0],
                    "azimuth_deg": [170.0, 90.0, 10.0],
                    "elevation_deg": [0.0, 0.0, 0.0],
                    "distance_m": [8.0, 3.0, 8.0],
                },
            },
            {
                "class": "dog_bark",
                "class_id": 0,
                "motion": "static",
                "level_db": -6.0,
                "trajectory": {
                    "t": [0.0, 10.0],
                    "azimuth_deg": [-90.0, -90.0],
                    "elevation_deg": [10.0, 10.0],
                    "distance_m": [2.0, 2.0],
                },
            },
        ],
        "distractors": [{"class": "wind", "azimuth_deg": 0, "elevation_deg": 0, "distance_m": 3}],
    }
    scene = scene_from_clip_metadata(meta)
    assert [s.label for s in scene.sources] == ["siren", "dog_bark"]
    m = describe_motion(scene.sources[0].points)
    assert (m.kind, m.start_region, m.via_region, m.end_region, m.distance_trend) == (
        "passing",
        "back",
        "left",
        "front",
        "passing by",
    )
    caption = TemplateCaptioner(phrases={"dog_bark": "a dog barking"}).caption(scene, 0)
    assert "wind" not in caption and "siren" in caption and "dog" in caption
    with pytest.raises(InputError, match="no ground-truth sources"):
        scene_from_clip_metadata({"id": "real", "duration_s": 10.0, "sources": []})
