"""The nano model's tokenizer: characters, whole numbers of up to a few digits, ChatML markers and tool tags."""

from __future__ import annotations

from .recipe import RECIPE

# Special tokens (Qwen3 spelling). `<tool_call>`/`</tool_call>` are added tokens that are not "special", as in
# Qwen3: decoding with skip_special_tokens=True keeps them, and generation can stop on the close tag's id.
IM_START, IM_END, PAD, UNK = "<|im_start|>", "<|im_end|>", "<|pad|>", "<|unk|>"
TOOL_OPEN, TOOL_CLOSE = "<tool_call>", "</tool_call>"
CHARSET = "\n" + "".join(chr(c) for c in range(32, 127))  # printable ASCII + newline

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tokenizer(
    number_digits: int | None = None, vocab_size: int | None = None, model_max_length: int | None = None
):
    """Character-level `PreTrainedTokenizerFast` with ChatML special tokens and a chat template, where runs of up to
    `number_digits` digits are single tokens (default from the recipe; 0 or 1 = plain characters). `vocab_size` pads
    the vocabulary with filler tokens to exactly that many ids (any id a model of that size samples decodes).

    Whole-number tokens make copying a number (from the problem into code, from the executor's output into the
    box) a one-token attention, which a tiny model learns in minutes; computing by hand stays a guess per token.
    Ids: 0 `<|pad|>`, 1 `<|unk|>`, 2 `<|im_start|>`, 3 `<|im_end|>` (eos), then the characters, then the numbers,
    then `<tool_call>` and `</tool_call>` (single added tokens)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    digits = RECIPE["tokenizer"]["number_digits"] if number_digits is None else number_digits
    specials = [PAD, UNK, IM_START, IM_END]
    vocab = {tok: i for i, tok in enumerate(specials)}
    for ch in CHARSET:
        vocab[ch] = len(vocab)
    for width in range(2, digits + 1):
        for k in range(10**width):
            vocab[str(k).zfill(width)] = len(vocab)
    if vocab_size is not None:
        if len(vocab) + 2 > vocab_size:
            raise ValueError(f"vocab_size {vocab_size} is below the {len(vocab) + 2} base tokens")
        while len(vocab) < vocab_size - 2:  # the two tool tags come last
            vocab[f"<|x{len(vocab)}|>"] = len(vocab)
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    pattern = rf"\d{{1,{digits}}}|\D" if digits > 1 else r"[\s\S]"  # Oniguruma has no (?s)
    core.pre_tokenizer = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
    core.decoder = decoders.Fuse()
    core.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    core.add_tokens([AddedToken(t, special=False, normalized=False) for t in (TOOL_OPEN, TOOL_CLOSE)])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=None,
        eos_token=IM_END,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=[IM_START],
        padding_side="left",
        model_max_length=model_max_length or RECIPE["model"]["max_position_embeddings"],
    )
    tok.chat_template = CHAT_TEMPLATE
    if vocab_size is not None and len(tok) != vocab_size:
        raise RuntimeError(f"tokenizer has {len(tok)} ids, expected {vocab_size}")
    return tok
