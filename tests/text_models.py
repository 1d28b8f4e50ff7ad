"""Tiny Hugging Face text models for the tests, built offline: a WordPiece tokenizer trained with
``tokenizers`` on a small corpus, BERT-style models with random weights from ``transformers``,
exported to ONNX as optimum does (named inputs, dynamic batch and sequence axes) and zipped with
their ``save_pretrained`` files. ``pipeline`` gives ``transformers``' own answers for the same
model, the reference the server is held to."""

from __future__ import annotations

import dataclasses
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "hello world, this is a small test of serving text models",
    "model serving with tokens, words and sentences",
    "paris and berlin are cities; alice and bob are people",
    "prices went up and the market went down",
] * 20
LABELS = {"text-classification": ["negative", "neutral", "positive"],
          "token-classification": ["O", "B-PER", "I-PER", "B-LOC"]}
MAX_LENGTH = 48


@dataclasses.dataclass
class TextModel:
    task: str
    zip_path: Path
    model: Any
    """The ``transformers`` model (PyTorch, eval mode)."""
    tokenizer: Any
    """Its ``transformers`` fast tokenizer."""

    def pipeline(self) -> Any:
        from transformers import pipeline

        return pipeline(self.task, model=self.model, tokenizer=self.tokenizer, device="cpu")


def build(task: str, folder: Path, *, problem_type: str | None = None, seed: int = 1,
          vocab_size: int | None = None, drop: tuple[str, ...] = ()) -> TextModel:
    """Export a tiny model for ``task`` into ``folder`` and zip it (``folder.zip``), leaving out
    the members in ``drop``; ``vocab_size`` writes a config.json declaring another vocabulary
    than the tokenizer's."""
    import torch
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        BertForTokenClassification,
        BertModel,
        BertTokenizerFast,
    )

    tokenizer = BertTokenizerFast(tokenizer_object=_wordpiece(), model_max_length=MAX_LENGTH)
    labels = LABELS.get(task, [])
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32,
                        num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                        max_position_embeddings=64, num_labels=max(len(labels), 2),
                        id2label=dict(enumerate(labels)) or None,
                        label2id={label: i for i, label in enumerate(labels)} or None,
                        problem_type=problem_type, attn_implementation="eager",
                        initializer_range=0.3)
    torch.manual_seed(seed)
    cls = {"text-classification": BertForSequenceClassification,
           "token-classification": BertForTokenClassification,
           "feature-extraction": BertModel}[task]
    model = cls(config).eval()
    if task != "feature-extraction":  # random heads score near-uniformly: make labels differ
        with torch.no_grad():
            model.classifier.weight.mul_(5)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(folder)
    config.save_pretrained(folder)
    output = "last_hidden_state" if task == "feature-extraction" else "logits"
    sample = tokenizer(["hello world", "a"], return_tensors="pt", padding=True)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes: dict[str, dict[int, str]] = {name: {0: "batch", 1: "sequence"} for name in names}
    axes[output] = {0: "batch", 1: "sequence"} if output != "logits" or \
        task == "token-classification" else {0: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_by_name(model, output), tuple(sample[n] for n in names),
                          str(folder / "model.onnx"), input_names=names,
                          output_names=[output], dynamic_axes=axes, opset_version=17,
                          dynamo=False)
    if vocab_size is not None:  # a config.json from another model
        config.vocab_size = vocab_size
        config.save_pretrained(folder)
    zip_path = folder.with_suffix(".zip")
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for member in sorted(folder.iterdir()):
            if member.name not in drop:
                archive.write(member, f"{folder.name}/{member.name}")
    return TextModel(task, zip_path, model, tokenizer)


def _by_name(model: Any, output: str) -> Any:
    import torch

    class ByName(torch.nn.Module):
        """The model called with its inputs by name, giving one output, as optimum exports."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return getattr(self.model(input_ids=input_ids, attention_mask=attention_mask,
                                      token_type_ids=token_type_ids), output)

    return ByName().eval()


def _wordpiece() -> Any:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import WordPieceTrainer

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer.train_from_iterator(CORPUS, WordPieceTrainer(vocab_size=300, special_tokens=special))
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tokenizer.decoder = decoders.WordPiece()
    return tokenizer
