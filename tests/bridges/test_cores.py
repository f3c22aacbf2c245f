"""The bridges' engine-independent cores (C# for Unity, C++ for Unreal) against the Python
reference: axis mappings (swansphere.foa.engines, swansphere.foa.rotation), AudioChunk PCM
decoding (swansphere.serve.render), and the sample-offset ring buffer's behaviour."""

import subprocess

import numpy as np
import pytest

from swansphere.foa import engines
from swansphere.foa.rotation import quat_conjugate, quat_to_matrix, ypr_to_quat
from swansphere.serve.render import decode_pcm, encode_pcm

from .conftest import BRIDGES, run_script

CORES = ["csharp_core", "cpp_core"]


@pytest.fixture(params=CORES)
def core(request) -> list[str]:
    return request.getfixturevalue(request.param)


def _numbers(answer: str) -> np.ndarray:
    assert not answer.startswith("error"), answer
    return np.array([float(v) for v in answer.split()])


def _args(*values) -> str:
    return " ".join(repr(float(v)) for v in values)


def _same_rotation(q_core: np.ndarray, q_ref: np.ndarray) -> None:
    assert q_core[0] >= 0 and abs(np.linalg.norm(q_core) - 1) < 1e-12
    np.testing.assert_allclose(quat_to_matrix(q_core), quat_to_matrix(q_ref), atol=1e-12)


def test_axis_mappings_match_python(core):
    rng = np.random.default_rng(7)
    cases = []
    for _ in range(20):
        p = rng.uniform(-500, 500, 3)
        e = rng.uniform(-360, 360, 3)
        q = rng.normal(size=4)
        cases.append((p, e, q))
    script = []
    for p, e, q in cases:
        script += [
            f"unity_position {_args(*p)}",
            f"unity_euler {_args(*e)}",
            f"unity_quat {_args(*q)}",
            f"unreal_position {_args(*p)}",
            f"unreal_rotator {_args(*e)}",
            f"unreal_quat {_args(*q)}",
            f"ypr_quat {_args(*e)}",
        ]
    answers = iter(run_script(core, script))
    for p, e, q in cases:
        np.testing.assert_allclose(_numbers(next(answers)), engines.unity_position(p), atol=1e-12)
        np.testing.assert_allclose(
            _numbers(next(answers)), engines.unity_euler_to_ypr(e), atol=1e-12
        )
        _same_rotation(_numbers(next(answers)), engines.unity_quaternion(q))
        np.testing.assert_allclose(_numbers(next(answers)), engines.unreal_position(p), atol=1e-12)
        np.testing.assert_allclose(
            _numbers(next(answers)), engines.unreal_rotator_to_ypr(*e), atol=1e-12
        )
        _same_rotation(_numbers(next(answers)), engines.unreal_quaternion(q))
        _same_rotation(_numbers(next(answers)), ypr_to_quat(*e))


def test_listener_frame_matches_python(core):
    rng = np.random.default_rng(8)
    script, expected = [], []
    for _ in range(20):
        point, listener = rng.uniform(-20, 20, 3), rng.uniform(-20, 20, 3)
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        script.append(f"listener {_args(*point, *listener, *q)}")
        expected.append(quat_to_matrix(quat_conjugate(q)) @ (point - listener))
    for answer, want in zip(run_script(core, script), expected, strict=True):
        np.testing.assert_allclose(_numbers(answer), want, atol=1e-12)


def test_pinned_examples(core):
    """Explicit cases, so a sign slip shows as a readable failure."""
    answers = run_script(
        core,
        [
            "unity_position 0 0 1",  # Unity forward -> wire front
            "unity_position 1 0 0",  # Unity right -> wire -y (right)
            "unreal_position 0 250 0",  # Unreal 2.5 m right -> wire y = -2.5
            "unity_euler 0 90 0",  # Unity turn right 90 -> wire yaw -90
            "unreal_rotator 0 90 0",  # Unreal Yaw +90 turns right -> wire yaw -90
            "ypr_quat 90 0 0",  # yaw +90 about z: (cos 45, 0, 0, sin 45)
            "listener 1 1 0 0 0 0 0.7071067811865476 0 0 0.7071067811865476",  # turned left
        ],
    )
    np.testing.assert_allclose(_numbers(answers[0]), [1, 0, 0], atol=1e-15)
    np.testing.assert_allclose(_numbers(answers[1]), [0, -1, 0], atol=1e-15)
    np.testing.assert_allclose(_numbers(answers[2]), [0, -2.5, 0], atol=1e-15)
    np.testing.assert_allclose(_numbers(answers[3]), [-90, 0, 0], atol=1e-15)
    np.testing.assert_allclose(_numbers(answers[4]), [-90, 0, 0], atol=1e-15)
    np.testing.assert_allclose(_numbers(answers[5]), [0.5**0.5, 0, 0, 0.5**0.5], atol=1e-15)
    # a point front-left of a listener who faces left is on the listener's front-right
    np.testing.assert_allclose(_numbers(answers[6]), [1, -1, 0], atol=1e-12)


@pytest.mark.parametrize("sample_format", ["float32", "int16"])
@pytest.mark.parametrize("channels", [1, 2, 4])
def test_pcm_decoding_matches_python(core, sample_format, channels):
    rng = np.random.default_rng(channels)
    block = rng.uniform(-1.2, 1.2, (channels, 37)).astype(np.float32)  # int16 clips
    pcm = encode_pcm(block, sample_format)
    answer = run_script(core, [f"decode {sample_format} {channels} {pcm.hex()}"])[0]
    want = decode_pcm(pcm, channels, sample_format).T.ravel()
    np.testing.assert_array_equal(_numbers(answer).astype(np.float32), want)


# A scenario on a 2-channel buffer of 4 frames; answers derived by hand from the contract
# in bridges/README.md ("PCM ring buffer").
RING_SCENARIO = [
    ("read 2", "0 0 0 0 0"),  # before the first chunk: silence, not an underrun
    ("write 100 2 1 2 3 4", "2"),  # the session's first chunk starts the offsets at 100
    ("read 1", "1 1 2"),
    ("write 104 2 5 6 7 8", "1"),  # 102..103 never came: 2 silent frames, then what fits
    ("counters", "2 0 1 0 4"),  # gap 2; frame 105 no longer fits; 4 buffered
    ("read 5", "4 3 4 0 0 0 0 5 6 0 0"),  # 4 real frames, 1 underrun
    ("write 103 4 9 9 9 9 9 9 10 11", "1"),  # 103..105 were placed (or lost): 106 is new
    ("counters", "2 3 1 1 1"),
    ("read 1", "1 10 11"),
    ("write -5 1 0 0", "error: sample offset must be >= 0, got -5"),
]


def test_ring_buffer_contract(core):
    answers = run_script(core, ["ring 2 4"] + [line for line, _ in RING_SCENARIO])
    assert answers[0] == "ok"
    for (line, want), got in zip(RING_SCENARIO, answers[1:], strict=True):
        if want.startswith("error"):
            assert got == want, line
        else:
            np.testing.assert_array_equal(_numbers(got), _numbers(want), err_msg=line)


def test_ring_buffer_twins_agree_on_a_random_stream(csharp_core, cpp_core):
    """Chunks in order, late (dropped), repeated and overlapping, read in engine-sized blocks."""
    rng = np.random.default_rng(3)
    script, offset = ["ring 2 96"], 0
    for _ in range(120):
        frames = int(rng.integers(1, 40))
        kind = rng.choice(["next", "gap", "repeat"], p=[0.7, 0.15, 0.15])
        if kind == "gap":
            offset += int(rng.integers(1, 30))
        elif kind == "repeat":
            offset = max(0, offset - int(rng.integers(1, 30)))
        values = np.round(rng.uniform(-1, 1, 2 * frames), 4)
        script.append(f"write {offset} {frames} {_args(*values)}")
        offset += frames
        if rng.random() < 0.8:
            script.append(f"read {int(rng.integers(1, 50))}")
        script.append("counters")
    a, b = run_script(csharp_core, script), run_script(cpp_core, script)
    assert a[0] == b[0] == "ok"
    for line, x, y in zip(script[1:], a[1:], b[1:], strict=True):
        np.testing.assert_allclose(_numbers(x), _numbers(y), atol=0, err_msg=line)
    gap, stale, _overflow, underrun, _available = _numbers(a[-1])
    assert gap > 0 and stale > 0 and underrun > 0  # the stream exercised each path


@pytest.mark.parametrize(
    "line, message",
    [
        ("unity_position nan 0 0", "Unity position has a non-finite component"),
        ("unreal_quat 0 0 0 0", "quaternion has zero norm"),
        ("ypr_quat 0 inf 0", "yaw/pitch/roll has a non-finite component"),
        ("decode float32 2 0000803f", "not whole frames of 2 x 4 bytes"),
        ("decode int16 0 0000", "channels must be >= 1"),
        ("ring 0 16", "channels must be 1..64"),
    ],
)
def test_bad_input_is_refused_by_name(core, line, message):
    answer = run_script(core, [line])[0]
    assert answer.startswith("error: ") and message in answer, answer


def test_unity_adapter_parses(csharp_core):
    """The MonoBehaviour needs Unity, gRPC and the generated classes, none of which are
    here; mcs still checks its syntax, so an edit that breaks it does not go unseen."""
    adapter = BRIDGES / "unity" / "Runtime" / "SwanSphereListener.cs"
    done = subprocess.run(["mcs", "--parse", str(adapter)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
