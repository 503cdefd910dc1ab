"""Build tiny random BERT classifiers with a real WordPiece tokenizer.

Tests and the queue-ceiling benchmark need models that load and run through
exactly the code real checkpoints do, without the hub and in milliseconds.
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build_tokenizer(corpus: Iterable[str], vocab_size: int = 2000):
    """A lower-casing WordPiece tokenizer whose vocabulary is the corpus's commonest words."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import BertTokenizerFast

    counts = Counter(w for text in corpus for w in re.findall(r"\w+|[^\w\s]", text.lower()))
    words = [w for w, _ in counts.most_common(max(vocab_size - len(SPECIAL_TOKENS) - 26, 0))]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(SPECIAL_TOKENS + letters + words))}
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    tok.decoder = decoders.WordPiece()
    return BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                             cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                             model_max_length=128)


def build_tiny_model(out_dir: str | Path, labels: Sequence[str], *, layers: int = 2, hidden: int = 32,
                     corpus: Iterable[str] = (), seed: int = 0, head_scale: float = 1.0,
                     tokenizer=None) -> Path:
    """Save a random BERT sequence classifier plus tokenizer to ``out_dir``.

    A wide initialisation (``initializer_range=1``) makes the [CLS] vector
    depend on the input, so confidences spread over (1/k, 1) instead of
    sitting at one value; routing tests need that spread.
    """
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    tokenizer = tokenizer or build_tokenizer(corpus)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=hidden * 2, max_position_embeddings=128,
                        num_labels=len(labels), id2label=dict(enumerate(labels)),
                        label2id={name: i for i, name in enumerate(labels)}, initializer_range=1.0)
    model = BertForSequenceClassification(config)
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, head_scale / hidden ** 0.5)
        model.classifier.bias.zero_()
    out = Path(out_dir)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
