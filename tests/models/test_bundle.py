"""Tests of swansphere/models/bundle.py: the bundle round trip, checksum verification that
names the offending file, refusal of pickle files, the `default` spec, and the builders."""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import swansphere.models.bundle as bundle_mod
from swansphere.errors import InputError
from swansphere.models.bundle import (
    BundleError,
    dataclass_from_dict,
    load_bundle,
    register_component_kind,
    write_bundle,
)


@dataclass(frozen=True)
class Inner:
    width: int = 4
    gains: tuple[float, ...] = (1.0,)


@dataclass(frozen=True)
class ToyConfig:
    dims: tuple[int, int] = (3, 2)
    inner: Inner = field(default_factory=Inner)
    tag: str | None = None


class Toy(nn.Module):
    def __init__(self, config: ToyConfig) -> None:
        super().__init__()
        self.config = config
        self.lin = nn.Linear(*config.dims)
        self.drop = nn.Dropout(0.5)
        self.register_buffer("scale", torch.tensor(2.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.lin(x)) * self.scale


register_component_kind("toy", lambda cfg: Toy(dataclass_from_dict(ToyConfig, cfg)))

EXTRA = {
    "data": {"seed": 7, "corpus": "procedural small", "clips": 12},
    "training_command": "swansphere train vae --preset tiny --data out/c",
    "metrics": {"toy": {"loss": 0.5}},
}


def _write(path: Path, seed: int = 0) -> tuple[Path, Toy]:
    torch.manual_seed(seed)
    toy = Toy(ToyConfig(dims=(3, 2), inner=Inner(8, (0.5, 2.0)), tag="x"))
    out = write_bundle(
        path,
        {"toy": (toy.config, toy.state_dict(), "toy")},
        EXTRA,
        extra_files={"notes/README.txt": "trained on 12 clips\n"},
    )
    return out, toy


def test_round_trip_builds_the_same_network_in_eval_mode(tmp_path: Path) -> None:
    path, toy = _write(tmp_path / "b")
    bundle = load_bundle(path)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format_version"] == 1
    assert manifest["components"] == {
        "toy": {"class": "toy", "config": "toy.config.json", "weights": "toy.safetensors"}
    }
    assert manifest["data"] == EXTRA["data"] and bundle.metrics == EXTRA["metrics"]
    assert bundle.training_command == EXTRA["training_command"]
    # Every file but the manifest is listed with its real sha256.
    listed = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
    assert set(manifest["files"]) == listed - {"manifest.json"}
    for rel, digest in manifest["files"].items():
        assert hashlib.sha256((path / rel).read_bytes()).hexdigest() == digest
    assert bundle.digest == hashlib.sha256((path / "manifest.json").read_bytes()).hexdigest()

    config, state = bundle.component("toy")
    assert config == {"dims": [3, 2], "inner": {"width": 8, "gains": [0.5, 2.0]}, "tag": "x"}
    assert bundle.config("toy") == config
    assert state.keys() == toy.state_dict().keys()
    net = bundle.build("toy")
    assert not net.training and net.config == toy.config  # tuples and nested dataclass back
    x = torch.randn(5, 3)
    toy.eval()
    assert torch.equal(net(x), toy(x))
    with pytest.raises(BundleError, match="no component 'vae'"):
        bundle.build("vae")


def test_tampered_weights_are_refused_naming_the_file(tmp_path: Path) -> None:
    path, toy = _write(tmp_path / "b")
    # A well-formed safetensors file with other weights: only the checksum can tell.
    other = {k: v + 1 for k, v in toy.state_dict().items()}
    save_file(other, str(path / "toy.safetensors"), metadata={"component": "toy"})
    with pytest.raises(BundleError, match=r"checksum mismatch for toy\.safetensors"):
        load_bundle(path)


def test_corrupted_and_missing_files_are_named(tmp_path: Path) -> None:
    path, _ = _write(tmp_path / "b")
    config = path / "toy.config.json"
    config.write_bytes(config.read_bytes()[:-3])  # truncated
    with pytest.raises(BundleError, match=r"checksum mismatch for toy\.config\.json"):
        load_bundle(path)
    path, _ = _write(tmp_path / "c")
    (path / "notes/README.txt").unlink()
    with pytest.raises(BundleError, match=r"notes/README\.txt is missing"):
        load_bundle(path)


def test_unlisted_files_and_pickles_are_refused(tmp_path: Path) -> None:
    path, toy = _write(tmp_path / "b")
    save_file(toy.state_dict(), str(path / "extra.safetensors"))
    with pytest.raises(BundleError, match=r"unlisted file extra\.safetensors"):
        load_bundle(path)

    path, toy = _write(tmp_path / "c")
    torch.save(toy.state_dict(), path / "toy.pt")
    with pytest.raises(BundleError, match=r"unlisted pickle-based file toy\.pt"):
        load_bundle(path)
    # Listing the pickle in the manifest, with its correct checksum, does not help.
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"]["toy.pt"] = hashlib.sha256((path / "toy.pt").read_bytes()).hexdigest()
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"toy\.pt .*pickle-based files are refused"):
        load_bundle(path)


def test_weights_must_be_safetensors_and_paths_stay_inside(tmp_path: Path) -> None:
    path, _ = _write(tmp_path / "b")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"]["../outside.safetensors"] = "0" * 64
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"'\.\./outside\.safetensors' is not a plain relative"):
        load_bundle(path)

    path, _ = _write(tmp_path / "c")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["components"]["toy"]["weights"] = "toy.config.json"
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"toy\.config\.json .*must be \.safetensors"):
        load_bundle(path)


def test_loading_never_unpickles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = _write(tmp_path / "b")

    def refuse(*args, **kwargs):
        raise AssertionError("unpickling attempted")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    assert not load_bundle(path).build("toy").training


def test_file_changed_after_verification_is_caught_on_use(tmp_path: Path) -> None:
    path, toy = _write(tmp_path / "b")
    bundle = load_bundle(path)
    save_file({k: v * 0 for k, v in toy.state_dict().items()}, str(path / "toy.safetensors"))
    with pytest.raises(BundleError, match=r"checksum mismatch for toy\.safetensors"):
        bundle.component("toy")
    assert bundle.config("toy")["tag"] == "x"  # the config alone never reads the weights
    (path / "toy.config.json").write_text('{"dims": [3, 2], "tag": "y"}')
    with pytest.raises(BundleError, match=r"checksum mismatch for toy\.config\.json"):
        bundle.config("toy")


def test_default_spec_without_a_shipped_bundle_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bundle_mod, "DEFAULT_BUNDLE_DIR", tmp_path / "default_bundle")
    with pytest.raises(BundleError, match="default model bundle is not installed"):
        load_bundle("default")
    path, _ = _write(tmp_path / "default_bundle")
    assert load_bundle("default").path == path.resolve()


def test_not_a_bundle_and_bad_manifests(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not a directory"):
        load_bundle(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match=r"manifest\.json missing"):
        load_bundle(tmp_path / "empty")
    path, _ = _write(tmp_path / "b")
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match=r"manifest\.json .*not valid JSON"):
        load_bundle(path)
    path, _ = _write(tmp_path / "c")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = 99
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="format_version 99"):
        load_bundle(path)


def test_a_failed_write_keeps_the_previous_bundle(tmp_path: Path) -> None:
    path, toy = _write(tmp_path / "b")
    before = (path / "manifest.json").read_bytes()
    with pytest.raises(BundleError, match="non-tensor at 'bad'"):
        write_bundle(path, {"toy": (toy.config, {"bad": 1.0}, "toy")})
    assert (path / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no temporary left
    load_bundle(path)
    with pytest.raises(BundleError, match="may not set files"):
        write_bundle(tmp_path / "x", {"toy": (toy.config, toy.state_dict(), "toy")}, {"files": {}})
    with pytest.raises(BundleError, match="component name"):
        write_bundle(tmp_path / "x", {"../toy": (toy.config, toy.state_dict(), "toy")})


def test_builders_and_config_conversion() -> None:
    with pytest.raises(BundleError, match="unknown component kind 'nope'"):
        bundle_mod.component_builder("nope")
    with pytest.raises(InputError):
        register_component_kind("bad kind", Toy)
    with pytest.raises(BundleError, match="unknown key"):
        dataclass_from_dict(ToyConfig, {"dims": [1, 2], "colour": "red"})
    cfg = dataclass_from_dict(ToyConfig, {"inner": {"gains": [1, 2, 3]}})
    assert cfg == ToyConfig(inner=Inner(4, (1, 2, 3)))


def test_the_foa_vae_round_trips_through_a_bundle(tmp_path: Path) -> None:
    vae = pytest.importorskip("swansphere.models.vae")
    config = vae.VAE_PRESETS["tiny"]
    torch.manual_seed(0)
    net = vae.FOAVAE(config).eval()
    write_bundle(tmp_path / "b", {"vae": (config.to_dict(), net.state_dict(), "vae")})
    rebuilt = load_bundle(tmp_path / "b").build("vae")
    assert rebuilt.config == config and not rebuilt.training
    state = net.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in rebuilt.state_dict().items())


def test_only_optional_training_heads_may_be_missing(tmp_path: Path) -> None:
    from swansphere.models.generator import GeneratorConfig, SpatialGenerator

    config = GeneratorConfig(lm_dim=32, lm_layers=1, dit_dim=32, dit_layers=1, history_layers=1)
    state = SpatialGenerator(config).state_dict()
    older = {k: v for k, v in state.items() if not k.startswith("direction_head.")}
    write_bundle(tmp_path / "old", {"generator": (config.to_dict(), older, "generator")})
    assert isinstance(load_bundle(tmp_path / "old").build("generator"), SpatialGenerator)
    broken = {k: v for k, v in older.items() if k != "dit.final.bias"}
    write_bundle(tmp_path / "bad", {"generator": (config.to_dict(), broken, "generator")})
    with pytest.raises(BundleError, match=r"generator\.safetensors.*dit\.final\.bias"):
        load_bundle(tmp_path / "bad").build("generator")
