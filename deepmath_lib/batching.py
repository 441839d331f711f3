"""Continuous batching for a Hugging Face causal LM: the engine behind `TransformersBackend`.

A worker thread owns a batch of *slots*, one per trajectory being decoded, and one key/value cache shared by them.
Each slot's cache row is contiguous and right-aligned (row `r` holds its `lens[r]` tokens in the last columns), so a
step writes every decoding slot's newest token at the same column. Each step is **one forward pass over one packed
row of tokens**, as vLLM mixes prefill and decode: the newest token of every slot being decoded, then the new tokens
of each request admitted at this step. Between two steps the engine

- frees the slot of every request that stopped (stop tag, EOS, its token limit) and hands its result back at once;
  the trajectory's cache row is kept aside, keyed by the trajectory;
- admits waiting requests into free slots: a continuing trajectory (after a sandbox call) brings only the tokens
  that are new since its kept row (the last sampled token and the tool output); a new one starts from the newest
  prompt's cached prefix it shares (system prompt, few-shot turns) and brings the rest. Their tokens ride in the
  next step's packed row, beside the decode tokens (no forward pass of their own).

Attention reads the cache in place (`_packed_attention`): the decode tokens as one batch over the slots' rows, each
joiner's tokens causally over its own row. Sandbox calls run in other threads while the batch goes on decoding.

**Deterministic mode** (the default). When a request may join the batch must not depend on how fast a sandbox call
returns, or sampled tokens would change from run to run. So a trajectory whose request finished at step `s` is
*due* at step `s + lag`, rounded up to a multiple of `admit_every` (joiners are then prefilled together; the next
trajectory of a run, started when one ends, is due `lag` steps later still). That decode step waits until the due
request (or the trajectory's end) has arrived, and requests join in order of (due step, trajectory index); the batch
stalls only when a sandbox call outlasts those steps. Sampling draws from a generator reseeded per call from (run
seed, call number), so a run repeats exactly. Each run counts its steps from 0, so it also repeats whatever ran on
the engine before it (GRPO reuses one engine for every step's rollouts). With `deterministic=False` requests join as
soon as they arrive (no stalls, not reproducible).
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Req:
    tag: int
    ids: list[int]
    max_new: int
    sampling: Any  # profiles.Sampling
    stop: Any  # backends.Stop
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    due: int = 0
    new: list[int] = field(default_factory=list)


# Raised whenever a change can change the tokens sampled for the same weights, prompt and seed (how rows are packed,
# the attention maths, the order of random draws). Samples files record it (fingerprints.sample_fingerprint), so
# samples from another engine version are set aside, never resumed into a new run (CHANGELOG.md lists the versions).
ENGINE_VERSION = 3


class SlotEngine:
    """Continuous batching of token-level requests over `model` (see the module docstring).

    `submit(...)` is called from an event loop and returns a future of `(new_token_ids, finish)`. The hooks
    `start_run`, `trajectory_finished` tell the engine which trajectories are coming (deterministic mode)."""

    def __init__(
        self,
        model,
        tokenizer,
        eos_ids: tuple[int, ...],
        max_batch: int = 64,
        deterministic: bool = True,
        lag: int = 2,
        admit_every: int = 2,
    ):
        import torch

        self.model = model
        self.tokenizer = tokenizer
        self.eos_ids = frozenset(eos_ids)
        self.max_batch = max(1, int(max_batch))
        self.deterministic = deterministic
        self.lag = max(1, int(lag))
        self.admit_every = max(1, int(admit_every))
        self.device = next(model.parameters()).device
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._torch = torch
        self._cv = threading.Condition()
        self._pending: list[_Req] = []
        self._due: dict[int, int] = {}
        self._plan = False  # a run announced by start_run: deterministic admission applies
        self._next_tag = 0
        self._n_jobs = 0
        self._seed = 0
        self._step = 0
        self._closed = False
        self._thread: threading.Thread | None = None
        self._kept: dict[int, tuple[list[int], list[Any], list[Any]]] = {}  # tag -> (token ids, keys, values)
        self._pieces: dict[int, str] = {}
        self._prefix: tuple[list[int], list[Any], list[Any]] | None = None
        self._gen = torch.Generator(device=self.device)
        self._draws = 0
        # the batch: slots, per-slot lengths, the shared cache (None when empty)
        self._slots: list[_Req | None] = []
        self._lens: list[int] = []
        self._arena = _Arena()
        self.stats = {
            "decode_steps": 0,
            "prefills": 0,
            "prefill_tokens": 0,
            "reused_tokens": 0,
            "shared_prefills": 0,
            "stalls": 0,
            "step_s": 0.0,
            "sample_s": 0.0,
            "idle_s": 0.0,
            "rows": 0,  # tokens sampled, summed over steps (rows per step: rows / decode_steps)
            "sparse_steps": 0,  # steps that sampled for fewer than an eighth of max_batch rows
            "sparse_s": 0.0,  # their time
        }

    # ------------------------------------------------------------ event-loop side

    def start_run(self, n_jobs: int, concurrency: int, seed: int) -> None:
        """A new agent run: trajectories 0..n_jobs-1 start in index order, `concurrency` at a time."""
        with self._cv:
            first = min(n_jobs, max(1, concurrency))
            self._plan = True
            # steps count from 0 in each run: where the last run left the counter depends on when its last
            # trajectories reported back (timing), and joiners are admitted on multiples of `admit_every`
            self._step = 0
            self._due = {t: 0 for t in range(first)}
            self._next_tag = first
            self._n_jobs = n_jobs
            self._seed = int(seed)
            self._draws = 0
            self._kept.clear()
            self._prefix = None  # the weights may have changed (a GRPO step)
            self._cv.notify_all()

    def trajectory_finished(self, tag: int) -> None:
        """Trajectory `tag` will send no more requests: the next one (in index order) takes over its due step."""
        with self._cv:
            self._kept.pop(tag, None)
            if self._plan:
                due = self._due.pop(tag, self._step)
                if (
                    self._next_tag < self._n_jobs
                ):  # its start (answer check, sandbox start) gets `lag` more steps
                    self._due[self._next_tag] = due + self.lag
                    self._next_tag += 1
            self._cv.notify_all()

    def submit(self, ids: list[int], max_new: int, sampling, stop, tag: int) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        if max_new <= 0:
            fut.set_result(([], "length"))
            return fut
        with self._cv:
            if self._closed:
                raise RuntimeError("the generation engine is closed")
            due = self._due.pop(tag, self._step) if self._plan else self._step
            self._pending.append(_Req(tag, list(ids), max_new, sampling, stop, fut, loop, due))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="deepmath-batching", daemon=True)
                self._thread.start()
            self._cv.notify_all()
        return fut

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    # ------------------------------------------------------------ worker thread

    def _n_active(self) -> int:
        return sum(r is not None for r in self._slots)

    def _take_joiners(self) -> list[_Req] | None:
        """Requests to admit before the next decode step; None: wait (a due trajectory has not sent its request)."""
        free = self.max_batch - self._n_active()
        if not (self.deterministic and self._plan):
            if self._n_active() and self._step % self.admit_every:
                return []
            ready = sorted(self._pending, key=lambda r: r.tag)[:free]
        else:
            if not self._n_active():  # nothing to decode: skip ahead to the next due step
                dues = [r.due for r in self._pending] + list(self._due.values())
                if dues:
                    self._step = max(self._step, min(dues))
            # every slot busy: nobody joins this step, whoever is due (so no need to wait for them)
            if free <= 0:
                return []
            if any(d <= self._step for d in self._due.values()):
                return None
            ready = sorted((r for r in self._pending if r.due <= self._step), key=lambda r: (r.due, r.tag))[
                :free
            ]
        taken = {id(r) for r in ready}
        self._pending = [r for r in self._pending if id(r) not in taken]
        return ready

    def _run(self) -> None:
        torch = self._torch
        clock = time.perf_counter
        with torch.inference_mode():
            while True:
                with self._cv:
                    t0 = clock()
                    while True:
                        if self._closed:
                            return
                        joiners = self._take_joiners()
                        if joiners is not None and (joiners or self._n_active()):
                            break
                        if joiners is None and self._n_active():
                            self.stats["stalls"] += 1
                        self._cv.wait()
                    self.stats["idle_s"] += clock() - t0
                try:
                    t0 = clock()
                    sparse = self.stats["sparse_steps"]
                    self._forward_step(joiners)
                    dt = clock() - t0
                    self.stats["step_s"] += dt
                    if self.stats["sparse_steps"] > sparse:
                        self.stats["sparse_s"] += dt
                except BaseException as exc:  # fail the requests in the batch; the engine goes on serving
                    for req in [r for r in self._slots if r is not None] + list(joiners or []):
                        if not req.future.done():
                            req.loop.call_soon_threadsafe(_set_exception, req.future, exc)
                    self._slots, self._lens = [], []
                    self._arena.clear()

    def _forward(
        self, input_ids, attention_mask, position_ids, keys=None, values=None, cache=None, keep=None
    ):
        """The model on `input_ids`: logits of each row's last position, and the keys/values after the pass. With
        `cache` (the arena's, in a packed step) the batch is one packed row and `keep` picks the positions whose
        logits come back."""
        from transformers import DynamicCache

        packed = cache is not None
        if cache is None:
            cache = DynamicCache(config=self.model.config)
            if keys is not None:
                for layer, k, v in zip(cache.layers, keys, values, strict=True):
                    layer.lazy_initialization(k, v)
                    layer.keys, layer.values = k, v
        config = self.model.config
        impl = config._attn_implementation
        # packed steps: our attention over the arena (no mask tensors at all); row prefills: the same maths as
        # sdpa without its per-head copies of the cache (see _grouped_attention)
        if packed or impl == "sdpa":
            config._attn_implementation = _register_attention(packed)
        try:
            out = self.model(
                input_ids=input_ids,
                attention_mask=None if packed else attention_mask,
                position_ids=position_ids,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=keep if packed else 1,
            )
        finally:
            config._attn_implementation = impl
        if packed:
            return out.logits[0].float(), None, None
        return (
            out.logits[:, -1, :].float(),
            [ly.keys for ly in cache.layers],
            [ly.values for ly in cache.layers],
        )

    def _share_prefix(self, fresh: list[_Req]) -> None:
        """New prompts that start alike (a system prompt, few-shot turns, GRPO's group of one problem) and that the
        kept prefix does not cover: their common part is computed once, on one row, and becomes the kept prefix,
        instead of once per row. Below `MIN_SHARED` tokens it is not worth a forward pass of its own."""
        if len(fresh) < 2:
            return
        ids = fresh[0].ids
        c = len(ids) - 1
        for r in fresh[1:]:
            c = _common_prefix(ids, r.ids, min(c, len(r.ids) - 1))
        have = _common_prefix(self._prefix[0], ids, c) if self._prefix is not None else 0
        if c < MIN_SHARED or c <= have:
            return
        torch = self._torch
        dev = self.device
        _, keys, values = self._forward(
            torch.tensor([ids[:c]], device=dev),
            torch.ones((1, c), dtype=torch.long, device=dev),
            torch.arange(c, device=dev)[None],
        )
        self._prefix = (list(ids[:c]), [k[0] for k in keys], [v[0] for v in values])
        self.stats["prefill_tokens"] += c
        self.stats["shared_prefills"] += 1

    def _forward_step(self, joiners: list[_Req]) -> None:
        """One forward pass over one packed row of tokens: the newest token of every slot being decoded, then the
        new tokens of each joiner (a fresh prompt's part past its shared prefix, a continuing trajectory's tool
        output), as vLLM mixes prefill and decode. Each slot's cache row stays right-aligned: a decode slot writes
        one column, a joiner's kept past and new tokens are placed to end at the same column."""
        torch = self._torch
        dev = self.device
        arena = self._arena
        decode = [i for i, r in enumerate(self._slots) if r is not None]
        plans = []  # (request, kept cache or None, reused length, new tokens, fresh prompt?)
        if joiners:
            self._share_prefix([r for r in joiners if r.tag not in self._kept])
            for req in joiners:
                kept = self._kept.pop(req.tag, None)
                fresh = kept is None
                if fresh:
                    kept = self._prefix
                c = _common_prefix(kept[0], req.ids, len(req.ids) - 1) if kept is not None else 0
                plans.append((req, kept if c else None, c, req.ids[c:], fresh))
                self.stats["reused_tokens"] += c
                self.stats["prefill_tokens"] += len(req.ids) - c
            self.stats["prefills"] += 1
        # room: every row ends at column `hi + 1` after this step
        width = max([self._lens[i] for i in decode] + [c + len(s) - 1 for _, _, c, s, _ in plans] + [0])
        free = self._slots.count(None)
        if len(plans) > free:
            self._slots += [None] * (len(plans) - free)
            self._lens += [0] * (len(plans) - free)
        like = self._layer_like() if arena.kb is None else [k[0] for k in arena.kb]
        arena.reserve(len(self._slots), width, like)
        arena.ensure_right(1)
        hi = arena.hi
        rows, cols, pos, tokens = [], [], [], []
        for i in decode:
            rows.append(i)
            cols.append(hi)
            pos.append(self._lens[i])
            tokens.append(self._slots[i].new[-1])
        keep = list(range(len(decode)))
        spans = []  # (slot, first packed index, new tokens, row length after the step)
        for req, kept, c, suffix, _ in plans:
            slot = self._slots.index(None)
            self._slots[slot] = req
            n = len(suffix)
            if kept is not None:
                arena.put_at(slot, hi + 1 - n, [k[:, :c] for k in kept[1]], [v[:, :c] for v in kept[2]])
            spans.append((slot, len(tokens), n, c + n))
            rows += [slot] * n
            cols += range(hi + 1 - n, hi + 1)
            pos += range(c, c + n)
            tokens += suffix
            keep.append(len(tokens) - 1)
        layout = _Layout(arena, rows, cols, decode, [self._lens[i] + 1 for i in decode], spans, dev)
        _LAYOUT.current = layout
        try:
            logits, _, _ = self._forward(
                torch.tensor([tokens], device=dev),
                None,
                torch.tensor([pos], device=dev),
                cache=arena.cache(layout),
                keep=torch.tensor(keep, device=dev),
            )
        finally:
            _LAYOUT.current = None
        arena.hi += 1
        self._step += 1
        self.stats["decode_steps"] += 1
        self.stats["rows"] += len(decode) + len(plans)
        self.stats["sparse_steps"] += len(decode) + len(plans) < self.max_batch / 8
        for i in decode:
            self._lens[i] += 1
        for slot, _, _, length in spans:
            self._lens[slot] = length
        fresh_spans = [sp for sp, pl in zip(spans, plans, strict=True) if pl[4]]
        if fresh_spans:  # the newest prompt: a prefix for the next ones (the system prompt, few-shot turns)
            slot, _, _, length = fresh_spans[-1]
            self._prefix = (list(self._slots[slot].ids), *arena.row(slot, length))
        self._advance([self._slots[i] for i in decode] + [p[0] for p in plans], logits)
        self._trim()

    def _layer_like(self) -> list:
        """Empty per-layer (kv heads, 0, head dim) tensors: the arena's shape and dtype when nothing is cached."""
        torch = self._torch
        cfg = self.model.config
        d = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        dtype = next(self.model.parameters()).dtype
        return [
            torch.zeros((cfg.num_key_value_heads, 0, d), dtype=dtype, device=self.device)
            for _ in range(cfg.num_hidden_layers)
        ]

    def _advance(self, reqs: list[_Req], logits) -> None:
        """Sample one token per request; hand back the finished ones and free their slots."""
        t0 = time.perf_counter()
        tokens = self._sample(reqs, logits)
        self.stats["sample_s"] += time.perf_counter() - t0
        done = []
        for req, tid in zip(reqs, tokens, strict=True):
            req.new.append(tid)
            finish = self._finish(req, tid)
            if finish is not None:
                done.append((req, finish))
        if not done:
            return
        with self._cv:
            for req, finish in done:
                slot = next(i for i, r in enumerate(self._slots) if r is req)
                n = self._lens[slot]
                # the cache holds the request's ids and its new tokens except the last (never fed)
                self._kept[req.tag] = (req.ids + req.new[:-1], *self._arena.row(slot, n))
                self._slots[slot] = None
                self._lens[slot] = 0
                if self._plan:
                    due, k = self._step + self.lag, self.admit_every  # joins batched every k steps
                    self._due[req.tag] = -(-due // k) * k
                req.loop.call_soon_threadsafe(_set_result, req.future, (list(req.new), finish))
            self._cv.notify_all()

    def _finish(self, req: _Req, tid: int) -> str | None:
        if tid in self.eos_ids:
            return "eos"
        if tid in req.stop.token_ids:
            return "stop"
        if req.stop.pairs:
            piece = self._pieces.get(tid)
            if piece is None:
                piece = self._pieces[tid] = self.tokenizer.decode([tid], skip_special_tokens=False)
            if any(close[-1] in piece for _, close in req.stop.pairs) and req.stop.hit(
                self.tokenizer.decode(req.new, skip_special_tokens=False)
            ):
                return "stop"
        if len(req.new) >= req.max_new:
            return "length"
        return None

    def _sample(self, reqs: list[_Req], logits) -> list[int]:
        torch = self._torch
        out: list[int] = [0] * len(reqs)
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(reqs):
            s = r.sampling
            groups.setdefault((s.temperature or 0.0, s.top_k or 0, s.top_p or 1.0), []).append(i)
        for (temp, top_k, top_p), idx in groups.items():
            lg = logits[idx] if len(idx) < len(reqs) else logits
            if temp <= 0:
                for i, t in zip(idx, lg.argmax(-1).tolist(), strict=True):
                    out[i] = t
                continue
            lg = lg / temp
            if top_k and top_k < lg.shape[-1]:
                kth = torch.topk(lg, top_k, dim=-1).values[:, -1:]
                lg = lg.masked_fill(lg < kth, float("-inf"))
            if top_p < 1.0:
                srt, order = torch.sort(lg, dim=-1)
                cum = srt.softmax(-1).cumsum(-1)
                drop = cum <= 1 - top_p
                drop[:, -1] = False  # keep at least the most likely token
                lg = lg.masked_fill(drop.scatter(1, order, drop), float("-inf"))
            probs = lg.softmax(-1)
            # a draw from each row's distribution: argmax of p / Exp(1) noise (the exponential race), Exp(1) as
            # -log U (three times faster than `exponential_` or `multinomial` on a CPU)
            noise = torch.rand(probs.shape, generator=self._generator(), device=probs.device).log_().neg_()
            for i, t in zip(idx, (probs / noise).argmax(-1).tolist(), strict=True):
                out[i] = t
        return out

    def _generator(self):
        """The random source of one sampling call: seeded by (run seed, call number), so a run's draws repeat
        exactly when its batches do (deterministic mode)."""
        self._draws += 1
        return self._gen.manual_seed(hash((self._seed, self._draws)) & 0x7FFF_FFFF_FFFF_FFFF)

    def _trim(self) -> None:
        """Drop cache columns no row uses any more, and empty slots when the batch has drained."""
        active = [i for i, r in enumerate(self._slots) if r is not None]
        if not active:
            self._slots, self._lens = [], []
            self._arena.clear()
            return
        self._arena.lo = max(self._arena.lo, self._arena.hi - max(self._lens))
        if (
            len(active) <= len(self._slots) // 2
        ):  # on batch state alone: the same in every run (deterministic)
            self._arena.keep(active)
            self._slots = [self._slots[i] for i in active]
            self._lens = [self._lens[i] for i in active]


class _Arena:
    """The batch's key/value cache. Per layer one buffer (slots, kv heads, columns, head dim) with spare columns on
    both sides of the live window `lo:hi`; row `r`'s tokens are the last `lens[r]` columns of the window. A decode
    step writes its column in place (no copy of the cache per token, unlike concatenation); the buffer is
    reallocated only when the window or the slots outgrow it."""

    def __init__(self) -> None:
        self.kb: list[Any] | None = None
        self.vb: list[Any] | None = None
        self.rows = 0
        self.lo = self.hi = 0

    @property
    def width(self) -> int:
        return self.hi - self.lo

    def clear(self) -> None:
        self.kb = self.vb = None
        self.rows = 0
        self.lo = self.hi = 0

    def _realloc(self, rows: int, width: int, like) -> None:
        """New buffers for `rows` slots and a window of `width` columns (existing rows right-aligned in it)."""
        import torch

        spare = max(64, width)
        cap_rows = max(rows, self.kb[0].shape[0] if self.kb is not None else 0)
        lo, hi = spare // 2, spare // 2 + width
        kb, vb = [], []
        for layer, ref in enumerate(like):
            h, d = ref.shape[0], ref.shape[-1]
            k = ref.new_zeros((cap_rows, h, width + spare, d))
            v = torch.zeros_like(k)
            if self.kb is not None and self.width:
                k[: self.rows, :, hi - self.width : hi] = self.kb[layer][: self.rows, :, self.lo : self.hi]
                v[: self.rows, :, hi - self.width : hi] = self.vb[layer][: self.rows, :, self.lo : self.hi]
            kb.append(k)
            vb.append(v)
        self.kb, self.vb, self.lo, self.hi = kb, vb, lo, hi

    def reserve(self, rows: int, width: int, like) -> None:
        """Room for `rows` slots and a window at least `width` wide (widened on the left)."""
        width = max(width, self.width)
        if self.kb is None or rows > self.kb[0].shape[0] or self.hi - width < 0:
            self._realloc(max(rows, 2 * self.rows), width, like)
        self.lo = self.hi - width
        self.rows = max(self.rows, rows)

    def ensure_right(self, n: int) -> None:
        """Room for `n` more columns on the right."""
        if self.hi + n > self.kb[0].shape[2]:
            self._realloc(self.rows, self.width, [k[0] for k in self.kb])

    def put(self, slot: int, keys: list, values: list) -> None:
        n = keys[0].shape[1]
        for kb, vb, k, v in zip(self.kb, self.vb, keys, values, strict=True):
            kb[slot, :, self.hi - n : self.hi] = k
            vb[slot, :, self.hi - n : self.hi] = v

    def put_at(self, slot: int, end: int, keys: list, values: list) -> None:
        """Write one row's keys/values (per layer: kv heads, n, head dim) to end at column `end`."""
        n = keys[0].shape[1]
        for kb, vb, k, v in zip(self.kb, self.vb, keys, values, strict=True):
            kb[slot, :, end - n : end] = k
            vb[slot, :, end - n : end] = v

    def row(self, slot: int, n: int) -> tuple[list, list]:
        """Copies of one row's last `n` columns, per layer."""
        return (
            [kb[slot, :, self.hi - n : self.hi].clone() for kb in self.kb],
            [vb[slot, :, self.hi - n : self.hi].clone() for vb in self.vb],
        )

    def keep(self, slots: list[int]) -> None:
        """Keep only `slots`, moved to the front."""
        import torch

        idx = torch.tensor(slots, device=self.kb[0].device)
        for buf in (*self.kb, *self.vb):
            buf[: len(slots), :, self.lo : self.hi] = buf[:, :, self.lo : self.hi].index_select(0, idx)
        self.rows = len(slots)

    def cache(self, layout: _Layout):
        """A transformers cache whose layers write a packed step's keys/values in place, each token at its
        (row, column) of `layout` (the caller then moves `hi` on by one)."""
        from transformers import DynamicCache

        cache = DynamicCache()
        cache.layers = [_ArenaLayer(self, i, layout) for i in range(len(self.kb))]
        return cache


class _Layout:
    """Where the tokens of one packed step go, and the masks every layer shares. Token `t` belongs to slot
    `rows[t]` at column `cols[t]`; the first `len(decode)` tokens are the decode slots' (one each; `decode_lens`:
    their row lengths after the step); `spans` lists each joiner as (slot, first token, new tokens, row length after
    the step). When every slot is decoding and nobody joins (most steps), rows and columns are plain slices."""

    def __init__(self, arena: _Arena, rows, cols, decode, decode_lens, spans, device):
        import torch

        self.arena, self.spans, self.nd = arena, spans, len(decode)
        self.all_decode = not spans and decode == list(range(arena.rows))
        self.rows = self.cols = self.dec_idx = self.dead = None
        if not self.all_decode:
            self.rows = torch.tensor(rows, device=device)
            self.cols = torch.tensor(cols, device=device)
            if decode:
                self.dec_idx = torch.tensor(decode, device=device)
        if (
            decode
        ):  # decode rows see their own columns only; other rows keep one column (their results are dropped)
            width = arena.hi + 1 - arena.lo
            start = torch.full((arena.rows,), width - 1, dtype=torch.long)
            start[torch.tensor(decode)] = width - torch.tensor(decode_lens)
            self.dead = (torch.arange(width)[None, :] < start[:, None]).to(device)[:, None, None, :]
        self.causal = [  # each joiner's new tokens see its past and the new tokens before them
            torch.ones((n, length), dtype=torch.bool, device=device).tril(length - n).logical_not_()
            for _, _, n, length in spans
        ]


_LAYOUT = threading.local()  # the packed step in progress on this engine thread


def _arena_layer_class():
    from transformers.cache_utils import DynamicLayer

    class ArenaLayer(DynamicLayer):
        def __init__(self, arena: _Arena, index: int, layout: _Layout):
            super().__init__()
            self.arena, self.index, self.layout = arena, index, layout
            kb = arena.kb[index]
            self.dtype, self.device, self.is_initialized = kb.dtype, kb.device, True
            self.keys = kb[: arena.rows, :, arena.lo : arena.hi]
            self.values = arena.vb[index][: arena.rows, :, arena.lo : arena.hi]

        def update(self, key_states, value_states, *args, **kwargs):
            a, lay = self.arena, self.layout
            kb, vb = a.kb[self.index], a.vb[self.index]
            if lay.rows is None:  # every slot decoding: one column
                kb[: a.rows, :, a.hi] = key_states[0].transpose(0, 1)
                vb[: a.rows, :, a.hi] = value_states[0].transpose(0, 1)
            else:
                kb[lay.rows, :, lay.cols] = key_states[0].transpose(0, 1)
                vb[lay.rows, :, lay.cols] = value_states[0].transpose(0, 1)
            self.keys = kb[: a.rows, :, a.lo : a.hi + 1]
            self.values = vb[: a.rows, :, a.lo : a.hi + 1]
            return self.keys, self.values

    return ArenaLayer


def _ArenaLayer(arena: _Arena, index: int, layout: _Layout):  # noqa: N802  (made on first use: transformers loads lazily)
    global _ARENA_LAYER
    if _ARENA_LAYER is None:
        _ARENA_LAYER = _arena_layer_class()
    return _ARENA_LAYER(arena, index, layout)


_ARENA_LAYER = None
# tokens: a shorter common start of new prompts is prefilled row by row (as all of nano's prompts are)
MIN_SHARED = 64


def _common_prefix(a: list[int], b: list[int], limit: int) -> int:
    """Length of the common prefix of `a` and `b`, at most `limit`."""
    n = min(len(a), len(b), limit)
    if a[:n] == b[:n]:
        return max(n, 0)
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _set_result(fut: asyncio.Future, value) -> None:
    if not fut.done():
        fut.set_result(value)


def _set_exception(fut: asyncio.Future, exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


# ---------------------------------------------------------------- attention for decode steps

_ATTN = "deepmath_grouped"


def _grouped_attention(
    module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **kw
):
    """Attention with grouped query heads matched to their key/value head by a reshape, instead of copying the
    keys and values once per query head (which `sdpa` does whenever a mask is given, as it always is here).
    A module in training mode goes to `sdpa`."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if module.training:
        return sdpa_attention_forward(
            module,
            query,
            key,
            value,
            attention_mask,
            dropout=dropout,
            scaling=scaling,
            is_causal=is_causal,
            **kw,
        )
    b, hq, q, d = query.shape
    hkv = key.shape[1]
    scale = scaling if scaling is not None else d**-0.5
    g = hq // hkv
    # (b, hkv, g * q, d) @ (b, hkv, d, t): one matrix product per key/value head, no broadcast copies
    scores = (
        torch.matmul(query.reshape(b, hkv, g * q, d), key.transpose(-1, -2)).view(b, hkv, g, q, -1) * scale
    )
    if attention_mask is not None:
        mask = attention_mask[:, :, -q:, : key.shape[2]].unsqueeze(1)  # (b, 1, 1, q, t)
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + mask
    elif q > 1:  # no mask given: causal over the new positions
        t = key.shape[2]
        causal = torch.ones((q, t), dtype=torch.bool, device=scores.device).tril(t - q)
        scores = scores.masked_fill(~causal, torch.finfo(scores.dtype).min)
    probs = torch.softmax(scores.float(), dim=-1).to(value.dtype).view(b, hkv, g * q, -1)
    out = torch.matmul(probs, value)  # (b, hkv, g * q, d)
    return out.reshape(b, hq, q, d).transpose(1, 2).contiguous(), None


def _packed_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kw):
    """Attention of a packed step (see `SlotEngine._forward_step`), read straight from the arena: the decode tokens
    as one batch over every slot's row (queries of other slots are zeros, their results dropped), then each joiner's
    tokens over its own row, causal. Query heads are matched to their key/value head by a reshape."""
    import torch

    lay = _LAYOUT.current
    a = lay.arena
    kb, vb = a.kb[module.layer_idx], a.vb[module.layer_idx]
    _, hq, t, d = query.shape
    hkv = kb.shape[1]
    g = hq // hkv
    scale = scaling if scaling is not None else d**-0.5
    q = query[0].transpose(0, 1)  # (tokens, hq, d)
    nd = lay.nd
    if lay.all_decode:
        return _decode_attention(q, kb, vb, a, lay, hkv, g, scale).reshape(nd, hq, d)[None], None
    out = q.new_empty((t, hq, d))
    if nd:
        qd = q.new_zeros((a.rows, hkv, g, d))
        qd[lay.dec_idx] = q[:nd].reshape(nd, hkv, g, d)
        out[:nd] = (
            _decode_attention(qd, kb, vb, a, lay, hkv, g, scale)
            .index_select(0, lay.dec_idx)
            .reshape(nd, hq, d)
        )
    end = a.hi + 1
    for (slot, first, n, length), causal in zip(lay.spans, lay.causal, strict=True):
        k = kb[slot, :, end - length : end]  # (hkv, length, d)
        v = vb[slot, :, end - length : end]
        qj = q[first : first + n].reshape(n, hkv, g, d).permute(1, 2, 0, 3).reshape(hkv, g * n, d)
        scores = (torch.matmul(qj, k.transpose(-1, -2)) * scale).view(hkv, g, n, length)
        scores = scores.masked_fill(causal, torch.finfo(scores.dtype).min)
        probs = torch.softmax(scores.float(), dim=-1).to(v.dtype).view(hkv, g * n, length)
        out[first : first + n] = (
            torch.matmul(probs, v).view(hkv, g, n, d).permute(2, 0, 1, 3).reshape(n, hq, d)
        )
    return out[None], None


def _decode_attention(q, kb, vb, a, lay, hkv: int, g: int, scale: float):
    """One query per slot (q: slots x hkv x g x head dim) over each slot's row of the arena."""
    import torch

    end = a.hi + 1
    scores = (
        torch.matmul(q.reshape(a.rows, hkv, g, -1), kb[: a.rows, :, a.lo : end].transpose(-1, -2)) * scale
    )
    scores = scores.masked_fill(lay.dead, torch.finfo(scores.dtype).min)  # (slots, hkv, g, width)
    probs = torch.softmax(scores.float(), dim=-1).to(vb.dtype)
    return torch.matmul(probs, vb[: a.rows, :, a.lo : end])  # (slots, hkv, g, head dim)


def _no_mask(*args, **kwargs):
    return None


_PACKED = "deepmath_packed"


def _register_attention(packed: bool = False) -> str:
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    if packed:
        AttentionInterface.register(_PACKED, _packed_attention)
        AttentionMaskInterface.register(_PACKED, _no_mask)
        return _PACKED
    AttentionInterface.register(_ATTN, _grouped_attention)
    AttentionMaskInterface.register(_ATTN, sdpa_mask)
    return _ATTN
