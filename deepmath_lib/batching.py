"""Continuous batching for a Hugging Face causal LM: the engine behind `TransformersBackend`.

A worker thread owns a batch of *slots*, one per trajectory being decoded, and one key/value cache shared by them.
Each slot's cache row is contiguous and right-aligned (row `r` holds its `lens[r]` tokens in the last columns), so a
decode step feeds every slot's newest token at the same column. Between two decode steps the engine

- frees the slot of every request that stopped (stop tag, EOS, its token limit) and hands its result back at once;
  the trajectory's cache row is kept aside, keyed by the trajectory;
- admits waiting requests into free slots: a continuing trajectory (after a sandbox call) prefills only the tokens
  that are new since its kept row (the last sampled token and the tool output); a new one starts from the newest
  prompt's cached prefix it shares (system prompt, few-shot turns) and prefills the rest. All the requests admitted
  at one boundary are prefilled in one batched forward pass.

Sandbox calls run in other threads while the batch goes on decoding.

**Deterministic mode** (the default). When a request may join the batch must not depend on how fast a sandbox call
returns, or sampled tokens would change from run to run. So a trajectory whose request finished at step `s` is
*due* at step `s + lag`, rounded up to a multiple of `admit_every` (joiners are then prefilled together; the next
trajectory of a run, started when one ends, is due `lag` steps later still). That decode step waits until the due
request (or the trajectory's end) has arrived, and requests join in order of (due step, trajectory index); the batch
stalls only when a sandbox call outlasts those steps. Sampling draws from a generator reseeded per call from (run
seed, call number), so a run repeats exactly. With `deterministic=False` requests join as soon as they arrive (no
stalls, not reproducible).
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
            "decode_s": 0.0,
            "prefill_s": 0.0,
            "sample_s": 0.0,
            "idle_s": 0.0,
        }

    # ------------------------------------------------------------ event-loop side

    def start_run(self, n_jobs: int, concurrency: int, seed: int) -> None:
        """A new agent run: trajectories 0..n_jobs-1 start in index order, `concurrency` at a time."""
        with self._cv:
            first = min(n_jobs, max(1, concurrency))
            self._plan = True
            self._due = {t: self._step for t in range(first)}
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
                    if joiners:
                        t0 = clock()
                        self._prefill(joiners)
                        self.stats["prefill_s"] += clock() - t0
                    if self._n_active():
                        t0 = clock()
                        self._decode_step()
                        self.stats["decode_s"] += clock() - t0
                except BaseException as exc:  # fail the requests in the batch; the engine goes on serving
                    for req in [r for r in self._slots if r is not None] + list(joiners or []):
                        if not req.future.done():
                            req.loop.call_soon_threadsafe(_set_exception, req.future, exc)
                    self._slots, self._lens = [], []
                    self._arena.clear()

    def _forward(self, input_ids, attention_mask, position_ids, keys=None, values=None, cache=None):
        """Logits of each row's last position (and the keys/values after the pass, unless `cache` is given)."""
        from transformers import DynamicCache

        if cache is None:
            cache = DynamicCache(config=self.model.config)
            if keys is not None:
                for layer, k, v in zip(cache.layers, keys, values, strict=True):
                    layer.lazy_initialization(k, v)
                    layer.keys, layer.values = k, v
        config = self.model.config
        impl = config._attn_implementation
        if (
            impl == "sdpa"
        ):  # the same maths without sdpa's per-head copies of the cache (see _grouped_attention)
            config._attn_implementation = _register_attention()
        try:
            out = self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            )
        finally:
            config._attn_implementation = impl
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

    def _prefill(self, joiners: list[_Req]) -> None:
        """One batched forward pass over the joiners' new tokens, on top of their kept cache rows."""
        torch = self._torch
        self._share_prefix([r for r in joiners if r.tag not in self._kept])
        pasts, suffixes = [], []
        fresh = []  # joiners with no kept row of their own: they start from the last prompt's shared prefix
        for j, req in enumerate(joiners):
            kept = self._kept.pop(req.tag, None)
            if kept is None:
                fresh.append(j)
                kept = self._prefix
            c = 0
            if kept is not None:
                c = _common_prefix(kept[0], req.ids, len(req.ids) - 1)
                if c == 0:
                    kept = None
            pasts.append((c, kept))
            suffixes.append(req.ids[c:])
            self.stats["reused_tokens"] += c
            self.stats["prefill_tokens"] += len(req.ids) - c
        self.stats["prefills"] += 1
        J = len(joiners)
        p_max = max(c for c, _ in pasts)
        s_max = max(len(s) for s in suffixes)
        dev = self.device
        input_ids = torch.full((J, s_max), self.pad_id, dtype=torch.long)
        mask = torch.zeros((J, p_max + s_max), dtype=torch.long)
        pos = torch.zeros((J, s_max), dtype=torch.long)
        for j, ((c, _), suf) in enumerate(zip(pasts, suffixes, strict=True)):
            input_ids[j, s_max - len(suf) :] = torch.tensor(suf)
            mask[j, p_max - c : p_max] = 1
            mask[j, p_max + s_max - len(suf) :] = 1
            pos[j, s_max - len(suf) :] = torch.arange(c, c + len(suf))
        keys = values = None
        if p_max:
            ref = next(kept for _, kept in pasts if kept is not None)[1]
            keys, values = [], []
            for layer in range(len(ref)):
                h, _, d = ref[layer].shape
                kl = ref[layer].new_zeros((J, h, p_max, d))
                vl = kl.clone()
                for j, (c, kept) in enumerate(pasts):
                    if c:
                        kl[j, :, p_max - c :] = kept[1][layer][:, :c]
                        vl[j, :, p_max - c :] = kept[2][layer][:, :c]
                keys.append(kl)
                values.append(vl)
        logits, keys, values = self._forward(input_ids.to(dev), mask.to(dev), pos.to(dev), keys, values)
        # each joiner's valid columns, made contiguous, into a free slot
        rows = []
        for j in range(J):
            c, n = pasts[j][0], len(suffixes[j])
            cols = torch.cat(
                [torch.arange(p_max - c, p_max), torch.arange(p_max + s_max - n, p_max + s_max)]
            ).to(dev)
            rows.append(
                ([k[j].index_select(1, cols) for k in keys], [v[j].index_select(1, cols) for v in values])
            )
        if fresh:  # the newest prompt: a prefix for the next ones (the system prompt, few-shot turns)
            j = fresh[-1]
            self._prefix = (list(joiners[j].ids), rows[j][0], rows[j][1])
        arena = self._arena
        free = self._slots.count(None)
        arena.reserve(len(self._slots) + max(0, J - free), max(r[0][0].shape[1] for r in rows), rows[0][0])
        if J > free:
            self._slots += [None] * (J - free)
            self._lens += [0] * (J - free)
        for req, (rk, rv) in zip(joiners, rows, strict=True):
            slot = self._slots.index(None)
            arena.put(slot, rk, rv)
            self._slots[slot] = req
            self._lens[slot] = rk[0].shape[1]
        self._advance(joiners, logits)

    def _decode_step(self) -> None:
        torch = self._torch
        dev = self.device
        arena = self._arena
        arena.ensure_right(1)
        width = arena.width
        lens = torch.tensor(self._lens, dtype=torch.long)
        tokens = torch.tensor(
            [[r.new[-1] if r is not None else self.pad_id] for r in self._slots], dtype=torch.long
        )
        mask = torch.cat(
            [
                (torch.arange(width)[None, :] >= (width - lens)[:, None]).long(),
                torch.ones((len(lens), 1), dtype=torch.long),
            ],
            1,
        )
        logits, _, _ = self._forward(tokens.to(dev), mask.to(dev), lens[:, None].to(dev), cache=arena.cache())
        arena.hi += 1
        self._step += 1
        self.stats["decode_steps"] += 1
        rows = [i for i, r in enumerate(self._slots) if r is not None]
        for i in rows:
            self._lens[i] += 1
        self._advance(
            [self._slots[i] for i in rows], logits[rows] if len(rows) < len(self._slots) else logits
        )
        self._trim()

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

    def cache(self):
        """A transformers cache whose layers write the step's column in place at `hi` (the caller then moves
        `hi` on by one)."""
        from transformers import DynamicCache

        cache = DynamicCache()
        cache.layers = [_ArenaLayer(self, i) for i in range(len(self.kb))]
        return cache


def _arena_layer_class():
    from transformers.cache_utils import DynamicLayer

    class ArenaLayer(DynamicLayer):
        def __init__(self, arena: _Arena, index: int):
            super().__init__()
            self.arena, self.index = arena, index
            kb = arena.kb[index]
            self.dtype, self.device, self.is_initialized = kb.dtype, kb.device, True
            self.keys = kb[: arena.rows, :, arena.lo : arena.hi]
            self.values = arena.vb[index][: arena.rows, :, arena.lo : arena.hi]

        def update(self, key_states, value_states, *args, **kwargs):
            a, n = self.arena, key_states.shape[-2]
            kb, vb = a.kb[self.index], a.vb[self.index]
            kb[: a.rows, :, a.hi : a.hi + n] = key_states
            vb[: a.rows, :, a.hi : a.hi + n] = value_states
            self.keys = kb[: a.rows, :, a.lo : a.hi + n]
            self.values = vb[: a.rows, :, a.lo : a.hi + n]
            return self.keys, self.values

    return ArenaLayer


def _ArenaLayer(arena: _Arena, index: int):  # noqa: N802  (a class made on first use: transformers is imported lazily)
    global _ARENA_LAYER
    if _ARENA_LAYER is None:
        _ARENA_LAYER = _arena_layer_class()
    return _ARENA_LAYER(arena, index)


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


def _register_attention() -> str:
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(_ATTN, _grouped_attention)
    AttentionMaskInterface.register(_ATTN, sdpa_mask)
    return _ATTN
