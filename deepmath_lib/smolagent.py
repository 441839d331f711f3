"""A smolagents `CodeAgent` for interactive use: our instruction, our Sandbox as its executor, and any of our
backends as its model (nano, smol, or a vLLM/OpenAI server for the paper model)."""

from __future__ import annotations

from typing import Any

from .agent import _run_sync
from .backends import Backend, Stop
from .profiles import Profile, Sampling
from .prompts import system_prompt
from .sandbox import SmolagentsExecutor


def backend_model(backend: Backend, sampling: Sampling, max_new_tokens: int = 256):
    """A smolagents `Model` that generates with one of our backends (one segment per call, stop strings honoured)."""
    import smolagents as sa

    class BackendModel(sa.Model):
        def __init__(self) -> None:
            super().__init__(model_id="deepmath-backend")

        def generate(
            self, messages, stop_sequences=None, response_format=None, tools_to_call_from=None, **kwargs
        ):
            chat = []
            for m in messages:
                m = m if isinstance(m, dict) else m.dict()
                content = m.get("content")
                if isinstance(content, list):
                    content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
                role = str(m.get("role", "user")).replace("MessageRole.", "").lower()
                chat.append(
                    {"role": "user" if role in ("tool-response", "tool-call") else role, "content": content}
                )
            tok = backend.tokenizer
            ids = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=True)
            ids = list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "input_ids") else ids)
            limit = getattr(backend, "max_model_len", None)
            if limit and len(ids) + max_new_tokens > limit:
                # the engine refuses a longer request; nano's character tokenizer makes smolagents' instructions
                # ~9k tokens: keep the prompt's end (the task and the latest steps)
                ids = ids[-(limit - max_new_tokens) :]
            stop = Stop(pairs=tuple(("", s) for s in (stop_sequences or [])))

            async def one():
                backend.trajectory_started()
                try:
                    return await backend.generate(ids, max_new_tokens, sampling, stop)
                finally:
                    backend.trajectory_finished()

            out = _run_sync(one())
            text = tok.decode(out.token_ids, skip_special_tokens=True)
            for s in stop_sequences or []:
                text = text.split(s)[0]
            usage = sa.monitoring.TokenUsage(input_tokens=len(ids), output_tokens=len(out.token_ids))
            return sa.ChatMessage(role=sa.MessageRole.ASSISTANT, content=text, token_usage=usage)

    return BackendModel()


def make_code_agent(backend: Backend, profile: Profile, max_steps: int = 4, **kwargs: Any):
    """A smolagents `CodeAgent` whose code runs in our Sandbox (not smolagents' AST interpreter)."""
    import smolagents as sa

    executor = SmolagentsExecutor(timeout=profile.sandbox_timeout, memory_mb=profile.sandbox_memory_mb)
    return sa.CodeAgent(
        tools=[],
        model=backend_model(backend, profile.eval_sampling),
        executor=executor,
        instructions=system_prompt(profile),
        max_steps=max_steps,
        verbosity_level=kwargs.pop("verbosity_level", 1),
        **kwargs,
    )
