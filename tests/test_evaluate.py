"""Evaluation bookkeeping: a resumed run never mixes samples from other weights or sampling settings."""

import json

import pytest

from deepmath_lib.fingerprints import _check_fingerprint, model_fingerprint
from deepmath_lib.profiles import get_profile
from deepmath_lib.results import ResultStore, read_records


def _fill(path, n):
    store = ResultStore(path)
    for i in range(n):
        store.append({"dataset": "nano", "config": "agent", "problem_id": str(i), "sample": 0, "pred": "1"})


def test_same_fingerprint_resumes_other_fingerprint_sets_aside(tmp_path, capsys):
    path = tmp_path / "samples" / "nano__agent.jsonl"
    _check_fingerprint(path, {"model": "A"})
    _fill(path, 3)
    _check_fingerprint(path, {"model": "A"})  # same weights: resume
    assert len(ResultStore(path)) == 3
    _check_fingerprint(path, {"model": "B"})  # other weights: the old samples are moved out of the way
    assert not path.exists() and "other weights" in capsys.readouterr().out
    stale = list((tmp_path / "samples").glob("nano__agent.jsonl.stale-*"))
    assert len(stale) == 1 and len(ResultStore(stale[0])) == 3
    assert read_records(tmp_path / "samples") == []  # set-aside samples never reach the summary
    assert json.loads(path.with_suffix(".meta.json").read_text()) == {"model": "B"}


def test_model_fingerprint_tracks_weights(tmp_path):
    prof = get_profile("nano")
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text("{}")
    (d / "model.safetensors").write_bytes(b"\x00" * 64)
    a = model_fingerprint(prof, d)
    assert a == model_fingerprint(prof, d)
    (d / "model.safetensors").write_bytes(b"\x01" * 64)
    assert model_fingerprint(prof, d) != a


def test_samples_without_a_fingerprint_are_set_aside_not_adopted(tmp_path, capsys):
    path = tmp_path / "samples" / "nano__agent.jsonl"
    _fill(path, 2)  # written by hand or by an old version: no .meta.json beside it
    _check_fingerprint(path, {"model": "A"})
    assert not path.exists() and "no fingerprint file" in capsys.readouterr().out
    assert len(list((tmp_path / "samples").glob("nano__agent.jsonl.stale-*"))) == 1
    assert read_records(tmp_path / "samples") == []


@pytest.mark.parametrize("profile", ["nano", "smol"])
def test_committed_samples_carry_the_fingerprint_of_the_weights_they_came_from(profile):
    """Every committed samples file has its fingerprint, and it matches the weights this checkout would evaluate:
    the base model for the untrained configurations, the trained weights (shipped: nano-grpo, smol-grpo; or a local
    GRPO output) for the others."""
    from deepmath_lib.fingerprints import CONFIGS, sample_fingerprint
    from deepmath_lib.models import trained_model_path
    from deepmath_lib.paths import REPO_ROOT

    prof = get_profile(profile)
    files = sorted((REPO_ROOT / "data" / "results" / prof.name / "samples").glob("*.jsonl"))
    assert len(files) == len(CONFIGS), files
    weights = {False: model_fingerprint(prof, None), True: model_fingerprint(prof, trained_model_path(prof))}
    for f in files:
        config = f.stem.split("__")[1]
        meta = json.loads(f.with_suffix(".meta.json").read_text())
        assert meta == sample_fingerprint(prof, config, weights[CONFIGS[config][0]]), f.name


def test_fingerprint_tracks_the_prompt_the_agent_limits_and_the_engine(monkeypatch):
    """Samples made with another prompt, other agent limits or another engine version are not resumed."""
    from deepmath_lib import batching, prompts
    from deepmath_lib.fingerprints import sample_fingerprint

    prof = get_profile("nano")
    base = sample_fingerprint(prof, "agent", "w")
    assert base["engine"] == f"transformers:{batching.ENGINE_VERSION}"
    assert sample_fingerprint(prof.with_overrides(max_calls=prof.max_calls + 1), "agent", "w") != base
    assert sample_fingerprint(prof.with_overrides(max_output_chars=99), "agent", "w") != base
    monkeypatch.setattr(prompts, "SYSTEM_TEMPLATE", prompts.SYSTEM_TEMPLATE + " ")
    assert sample_fingerprint(prof, "agent", "w")["agent"] != base["agent"]
    monkeypatch.undo()
    monkeypatch.setattr(batching, "ENGINE_VERSION", batching.ENGINE_VERSION + 1)
    assert sample_fingerprint(prof, "agent", "w")["engine"] != base["engine"]


def test_hub_adapter_fingerprint_holds_its_revision(monkeypatch, tmp_path):
    """A hub adapter's samples fingerprint changes with the commit the hub reports, and offline it comes from the
    cached snapshot's commit folder. The hub is faked at its client (no network)."""
    from types import SimpleNamespace

    import huggingface_hub

    prof = get_profile("paper")
    commits = {prof.model: "b" * 40, prof.released_weights: "1" * 40}
    cache: dict = {}

    def model_info(self, repo_id, **kwargs):
        if repo_id not in commits:
            raise huggingface_hub.errors.OfflineModeIsEnabled("offline")
        return SimpleNamespace(sha=commits[repo_id])

    def hf_hub_download(repo_id, filename, local_files_only=False, **kwargs):
        if repo_id not in cache:
            raise huggingface_hub.errors.LocalEntryNotFoundError("not cached")
        return str(cache[repo_id] / filename)

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", model_info)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    first = model_fingerprint(prof, prof.released_weights)
    assert first == model_fingerprint(prof, prof.released_weights)
    commits[prof.released_weights] = "2" * 40  # the adapter's repo got a new commit
    second = model_fingerprint(prof, prof.released_weights)
    assert second != first
    # offline: the hub answers nothing, the cache holds a snapshot of the second commit
    del commits[prof.released_weights]
    cache[prof.released_weights] = tmp_path / "snapshots" / ("2" * 40)
    assert model_fingerprint(prof, prof.released_weights) == second
    cache[prof.released_weights] = tmp_path / "snapshots" / ("3" * 40)
    assert model_fingerprint(prof, prof.released_weights) not in (first, second)
