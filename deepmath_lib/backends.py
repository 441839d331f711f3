"""Generation backends behind one small async interface.

`await backend.generate(ids, max_new_tokens, sampling, stop)` continues one trajectory's token ids until a stop
(the code-close tag: a token id or a string), EOS, or the token limit, and returns the new token ids. The agent loop
runs one coroutine per trajectory; each backend decides how to serve them concurrently:

- `TransformersBackend`: continuous batching in a worker thread (`batching.SlotEngine`): a trajectory that stops
  frees its slot at once, a waiting one joins at the next decode step and reuses its cached keys and values.
- `VLLMBackend`: vLLM's `AsyncLLM`, one request per coroutine (continuous batching on the GPU).
- `OpenAIBackend`: concurrent `/v1/completions` requests to a vLLM / SGLang / llama.cpp server, token ids in and out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.error
import urllib.request
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .aio import LoopThread
from .batching import SlotEngine
from .models import adapter_config, bf16_fast, load_model, split_weights
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


class Backend:
    """Interface. Subclasses set `tokenizer` and `eos_ids` and implement `generate`."""

    tokenizer: Any
    eos_ids: tuple[int, ...] = ()
    max_model_len: int | None = None  # the engine's context, where it refuses longer requests (vLLM)

    async def generate(
        self, ids: list[int], max_new_tokens: int, sampling: Sampling, stop: Stop, tag: int = 0
    ) -> GenOutput:
        """Continue `ids` by at most `max_new_tokens`; `tag` (the trajectory index) orders batched requests."""
        raise NotImplementedError

    # Hooks the agent loop calls so batching backends know which trajectories can still send requests.
    def start_run(self, n_jobs: int, concurrency: int, seed: int) -> None:
        """A run of trajectories 0..n_jobs-1 begins; they start in index order, `concurrency` at a time."""

    def trajectory_started(self, tag: int = 0) -> None: ...

    def trajectory_finished(self, tag: int = 0) -> None: ...

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

    def trajectory_started(self, tag: int = 0) -> None:
        self._live += 1

    def trajectory_finished(self, tag: int = 0) -> None:
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


class TransformersBackend(Backend):
    """Continuous batching across trajectories over a Hugging Face model (CPU or one GPU): see `batching`.

    `deterministic` (default) fixes when each request joins the batch by decode-step count, so sampled tokens do
    not depend on how fast sandbox calls return; `max_batch` is the number of slots."""

    def __init__(self, model, tokenizer, max_batch: int = 64, deterministic: bool = True):

        self.model = model
        self.tokenizer = tokenizer
        self.eos_ids = _eos_ids(tokenizer, model)
        self.max_batch = max_batch
        self.device = next(model.parameters()).device
        self.engine = SlotEngine(model, tokenizer, self.eos_ids, max_batch, deterministic=deterministic)

    @classmethod
    def from_profile(
        cls,
        profile: Profile,
        model_path: str | None = None,
        device: str | None = None,
        deterministic: bool = True,
    ):
        import torch

        if device is None or device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model, tok = load_model(profile, model_path=model_path, device=device)
        return cls(model, tok, max_batch=profile.concurrency, deterministic=deterministic)

    async def generate(
        self, ids: list[int], max_new_tokens: int, sampling: Sampling, stop: Stop, tag: int = 0
    ) -> GenOutput:
        new, finish = await self.engine.submit(ids, max_new_tokens, sampling, stop, tag)
        return GenOutput(new, finish)

    def start_run(self, n_jobs: int, concurrency: int, seed: int) -> None:
        self.engine.start_run(n_jobs, concurrency, seed)

    def trajectory_finished(self, tag: int = 0) -> None:
        self.engine.trajectory_finished(tag)

    def close(self) -> None:
        self.engine.close()


RawGenerate = Callable[[list[int], int, list[str], list[int]], Awaitable[GenOutput]]


async def generate_with_pairs(
    raw: RawGenerate, ids: list[int], max_new: int, stop: Stop, tokenizer, eos_ids: tuple[int, ...]
) -> GenOutput:
    """Continue `ids` with an engine that knows stop strings but not open/close pairs (vLLM, OpenAI servers).

    A fenced block opens and closes with the same characters, so stopping on the close string would stop on the
    opening fence. In two requests instead: up to the open string, then (if it came) up to the close string.
    `raw(ids, max_new, stop_strings, stop_ids)` is one engine request."""
    if not stop.pairs:
        return await raw(ids, max_new, [], list(stop.token_ids))
    # A pair with an empty open string (smolagents' stop sequences) stops on its close string alone, from the
    # first request on; engines refuse an empty stop string.
    alone = [c for o, c in stop.pairs if not o]
    opens = [o for o, _ in stop.pairs if o]
    first = await raw(ids, max_new, alone + opens, list(stop.token_ids))
    text = tokenizer.decode(first.token_ids, skip_special_tokens=False)
    left = max_new - len(first.token_ids)
    if first.finish != "stop" or left <= 0 or stop.hit(text):
        if first.finish == "stop" and not stop.hit(text):
            first.finish = "length"  # an open string with no room left to close it
        return first
    closes = [c for o, c in stop.pairs if o in text]
    second = await raw(ids + first.token_ids, left, closes, list(stop.token_ids))
    lps = first.logprobs + second.logprobs if first.logprobs and second.logprobs else None
    return GenOutput(first.token_ids + second.token_ids, second.finish, lps)


def native_vllm_dtype() -> str:
    """bfloat16 where the hardware computes it natively (`models.bf16_fast`), else float32: on an AVX2-only CPU vLLM's
    bf16 path runs ~5x slower than float32 (measured: 30 vs 155 tokens/s, SmolLM2-135M, 64 rows)."""
    import torch

    return "bfloat16" if bf16_fast("cuda" if torch.cuda.is_available() else "cpu") else "float32"


class VLLMBackend(Backend):
    """vLLM `AsyncLLM`: one request per trajectory coroutine; vLLM batches them continuously (GPU, or its CPU
    build). Requests ask for final outputs only and no log-probs (evaluation needs neither)."""

    def __init__(
        self,
        model: str,
        tokenizer=None,
        adapter: str | None = None,
        seed: int = 0,
        max_model_len: int | None = None,
        gpu_memory_utilization: float | None = None,
        **engine_kwargs,
    ):
        try:
            from vllm import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as exc:
            raise RuntimeError(
                "the vllm backend needs vLLM: `pip install -e .[gpu]` on a CUDA machine, or `make install-vllm` "
                f"(its CPU build, x86-64) ({type(exc).__name__}: {exc})"
            ) from exc
        from transformers import AutoTokenizer

        lora: dict[str, Any] = {}
        if adapter is not None:  # vLLM's default max_lora_rank (16) is below our r32 adapters
            lora = dict(
                enable_lora=True, max_loras=1, max_lora_rank=int(adapter_config(adapter).get("r", 16))
            )
        args = AsyncEngineArgs(
            model=model,
            seed=seed,
            max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization or 0.9,
            **lora,
            **engine_kwargs,
        )
        self.engine_args = args
        self.max_model_len = max_model_len
        # The engine lives on a loop thread of its own: AsyncLLM binds its output handler to the loop it is
        # created on and serves no other, and a caller's loop (a notebook cell's) may be blocked by a sync call.
        self._thread = LoopThread("vllm-loop")

        async def create():
            return AsyncLLM.from_engine_args(args)

        try:
            self.engine = self._thread.call(create())
        except BaseException:
            self._thread.close()
            raise
        # Shut down on close(), when collected, or at interpreter exit if neither came first (vLLM's own __del__
        # would then run on a half torn-down interpreter and print tracebacks).
        self._finalizer = weakref.finalize(self, _shutdown_engine, self._thread, [self.engine])
        self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(model)
        self.eos_ids = _eos_ids(self.tokenizer)
        self.adapter = adapter
        self._n = 0

    @classmethod
    def from_profile(cls, profile: Profile, model_path: str | None = None, **engine_kwargs):
        """The profile's base model (`model_path` None, no adapter) or the given weights: a full model, or a LoRA
        adapter served on the base model."""
        import os

        source, adapter = split_weights(profile, model_path)
        # DEEPMATH_VLLM_MEMORY overrides the memory share (on CPU: of a NUMA node's RAM, which others may hold)
        memory = float(os.environ.get("DEEPMATH_VLLM_MEMORY") or profile.gpu_memory_utilization)
        return cls(
            source,
            adapter=adapter,
            seed=profile.seed,
            dtype=profile.vllm_dtype or native_vllm_dtype(),
            enforce_eager=profile.vllm_enforce_eager,
            max_model_len=profile.max_model_len,
            gpu_memory_utilization=memory,
            **engine_kwargs,
        )

    async def _raw(
        self, ids: list[int], max_new: int, stop_strs: list[str], stop_ids: list[int], sampling, **extra: Any
    ):
        """One engine request; `extra` goes to `SamplingParams` (the rollout bench's fixed-length rows)."""
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        params = SamplingParams(
            **extra,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k if sampling.top_k > 0 else -1,
            max_tokens=max_new,
            stop_token_ids=stop_ids or None,
            stop=stop_strs or None,
            include_stop_str_in_output=True,
            skip_special_tokens=False,
            output_kind=RequestOutputKind.FINAL_ONLY,
        )
        lora = None
        if self.adapter:
            from vllm.lora.request import LoRARequest

            lora = LoRARequest("trained", 1, self.adapter)
        self._n += 1
        final = None
        async for out in self.engine.generate(
            {"prompt_token_ids": ids}, params, request_id=f"traj-{self._n}", lora_request=lora
        ):
            final = out
        comp = final.outputs[0]
        new = list(comp.token_ids)
        if new and new[-1] in self.eos_ids:
            finish = "eos"
        elif comp.finish_reason == "stop":
            finish = "stop"
        else:
            finish = "length"
        return GenOutput(new, finish)

    async def generate(
        self, ids: list[int], max_new_tokens: int, sampling: Sampling, stop: Stop, tag: int = 0
    ) -> GenOutput:
        async def raw(i, m, strs, sids):
            return await self._thread.run(self._raw(i, m, strs, sids, sampling))

        return await generate_with_pairs(raw, list(ids), max_new_tokens, stop, self.tokenizer, self.eos_ids)

    def close(self) -> None:
        """Shut the engine down and stop its loop thread. Idempotent."""
        self.engine = None
        self._finalizer()


def _shutdown_engine(thread: LoopThread, holder: list) -> None:
    """Shut an AsyncLLM down on its own loop (its output handler is a task there), then stop the loop."""
    engine = holder.pop()

    async def shutdown():
        engine.shutdown()
        # AsyncLLM.__del__ calls shutdown() again whenever the object is collected, which can be during interpreter
        # teardown when vLLM's module globals are gone (TypeError: 'NoneType' object is not callable). Once is enough.
        engine.shutdown = lambda *args, **kwargs: None

    with contextlib.suppress(Exception):
        thread.call(shutdown())
    thread.close()


class OpenAIBackend(Backend):
    """Concurrent `/v1/completions` requests (vLLM's OpenAI server, SGLang, llama.cpp server) with token-id
    prompts; token ids come back as ids (`return_token_ids`), never re-encoded from text."""

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
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise RuntimeError(self._http_error(exc)) from None
        except urllib.error.URLError as exc:
            raise RuntimeError(
                f"cannot reach the server at {self.url}: {exc.reason}; is it running?"
            ) from None

    def _http_error(self, exc) -> str:
        """The server's own message for a refused request (vLLM: `{"error": {"message": ...}}`, older servers:
        `{"message": ...}`), with what to do when the model asked for is not one it serves."""
        body = exc.read().decode("utf-8", "replace")
        try:
            data = json.loads(body)
            err = data.get("error", data)
            message = err.get("message", body) if isinstance(err, dict) else str(err)
        except (ValueError, AttributeError):
            message = body
        text = f"the server at {self.url} refused the request (HTTP {exc.code}): {message.strip()[:500]}"
        if exc.code == 404:
            text += (
                f". It does not serve the model {self.model!r}: ask for the model it serves (`--model base` for the "
                "base model), or start it with the adapter (`--enable-lora --lora-modules NAME=PATH`)"
            )
        return text

    async def _raw(self, ids, max_new, stop_strs, stop_ids, sampling: Sampling) -> GenOutput:
        payload = {
            "model": self.model,
            "prompt": ids,
            "max_tokens": max_new,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "top_k": sampling.top_k if sampling.top_k > 0 else -1,
            "stop_token_ids": stop_ids,
            "stop": stop_strs or None,
            "include_stop_str_in_output": True,
            "skip_special_tokens": False,
            "return_token_ids": True,
        }
        data = await asyncio.to_thread(self._post, payload)
        choice = data["choices"][0]
        if choice.get("token_ids") is None:
            raise RuntimeError(
                f"the server at {self.url} returned no token ids; it needs `return_token_ids` (vLLM >= 0.10.2)"
            )
        new = [int(t) for t in choice["token_ids"]]
        if new and new[-1] in self.eos_ids:
            return GenOutput(new, "eos")
        if choice.get("finish_reason") == "stop":
            return GenOutput(new, "stop")
        return GenOutput(new[:max_new], "length")

    async def generate(
        self, ids: list[int], max_new_tokens: int, sampling: Sampling, stop: Stop, tag: int = 0
    ) -> GenOutput:
        async def raw(i, m, strs, sids):
            return await self._raw(i, m, strs, sids, sampling)

        return await generate_with_pairs(raw, list(ids), max_new_tokens, stop, self.tokenizer, self.eos_ids)


class TRLVLLMBackend(BatchedBackend):
    """Generation through a GRPOTrainer's own vLLM (`use_vllm=True`, colocate or `trl vllm-serve` server mode), so
    TRL keeps the weights in sync after each step. Batched like the transformers backend; returns logprobs."""

    def __init__(self, trainer, max_batch: int = 256):
        tok = trainer.processing_class
        super().__init__(tok, _eos_ids(tok), max_batch)
        self.gen = trainer.vllm_generation
        # this rank's device: batches run in a worker thread, which starts on CUDA device 0 whatever the rank
        self.device = getattr(getattr(trainer, "accelerator", None), "device", None)
        self.client = None
        if getattr(self.gen, "mode", None) == "server":
            # TRL makes a client (and the weight-sync communicator) on the main process only; every other rank
            # generates through a client of its own on the same server.
            self.client = getattr(self.gen, "vllm_client", None)
            if self.client is None:
                from trl.generation.vllm_client import VLLMClient

                args = trainer.args
                url = args.vllm_server_base_url or f"http://{args.vllm_server_host}:{args.vllm_server_port}"
                self.client = VLLMClient(base_url=url, connection_timeout=args.vllm_server_timeout)

    def _generate_batch(self, batch: list[_Request]) -> list[GenOutput]:  # pragma: no cover - GPU only
        sampling = batch[0].sampling
        stop_ids = sorted({t for r in batch for t in r.stop.token_ids})
        results: list[GenOutput] = []
        if getattr(self.gen, "mode", "server") == "colocate":
            import torch
            from vllm import SamplingParams

            if self.device is not None and self.device.type == "cuda":
                torch.cuda.set_device(self.device)  # rank i's colocated engine lives on its own GPU

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
        out = self.client.generate(
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
    """The profile's backend (`transformers`, `vllm` or `openai`, the latter with `base_url=`) on the base model
    (`model_path` None) or the given weights (a full model, or a LoRA adapter on the base model)."""
    if profile.backend == "transformers":
        return TransformersBackend.from_profile(profile, model_path=model_path, device=kwargs.get("device"))
    if profile.backend == "vllm":
        return VLLMBackend.from_profile(profile, model_path=model_path, **kwargs)
    if profile.backend == "openai":
        from transformers import AutoTokenizer

        base_url = kwargs.get("base_url")
        if not base_url:
            raise ValueError("the openai backend needs a server address: --base-url http://HOST:PORT/v1")
        source, adapter = split_weights(profile, model_path)
        tok = AutoTokenizer.from_pretrained(source)
        # A server started with `--enable-lora --lora-modules NAME=PATH` serves the adapter under NAME.
        served = kwargs.get("served_model") or (adapter if adapter else source)
        return OpenAIBackend(base_url, served, tok)
    raise ValueError(f"unknown backend {profile.backend!r}; use transformers, vllm or openai")
