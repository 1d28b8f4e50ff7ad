"""Hugging Face text models exported to ONNX: raw text in, a prediction out.

The artifact is a zip of the folder an ONNX export writes (``optimum-cli export onnx``, or
``torch.onnx.export`` beside ``save_pretrained``): ``model.onnx``, ``config.json`` and
``tokenizer.json`` (``tokenizer_config.json`` too, for the maximum length), at the zip's root or
in one folder. Texts are tokenized with the ``tokenizers`` library (Rust), truncated to the
model's maximum length and padded to the longest text of the run; onnxruntime runs the graph.
Neither PyTorch nor ``transformers`` is needed to serve.

The task is read from the graph's output and the config's architecture:

- text-classification (``logits`` of ``[batch, labels]``): ``label`` (the config's
  ``id2label``), ``label_id`` and ``probabilities`` (softmax; sigmoid for multi-label models);
- feature-extraction (``last_hidden_state``): ``embedding``, the mean of the token states under
  the attention mask, unit length when the version's metadata says ``"normalize": true``;
- token-classification (``logits`` of ``[batch, tokens, labels]``): ``entities``, per text a
  JSON list of its tokens with label, score and character offsets (special tokens left out).

Every output has one row per text, so dynamic batching stacks texts like any rows. A model that
reads pairs of texts (a cross-encoder) takes a second input, ``text_pair``, when its version's
metadata says ``"text_pairs": true``.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from model_manager.errors import InvalidArtifact, InvalidInput, ModelError
from model_manager.runtimes.archive import has_module, missing_extra, zip_members
from model_manager.runtimes.base import LoadOptions
from model_manager.runtimes.onnx import open_session
from model_manager.runtimes.signature import Signature, TensorSpec
from model_manager.types import Array, Tensors

REQUIRED = ("model.onnx", "config.json", "tokenizer.json")
OPTIONAL = ("tokenizer_config.json", "special_tokens_map.json")
OPTIONS = ("normalize", "text_pairs")
"""Version metadata keys this format reads (booleans)."""
TASKS = ("text-classification", "feature-extraction", "token-classification")
UNSET_MAX_LENGTH = 10**12
"""``transformers`` writes a huge ``model_max_length`` (1e30) when a tokenizer sets none."""
_GRAPH_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_INT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}


class HuggingFaceFormat:
    name = "huggingface"
    platform = "huggingface_onnx"
    suffixes = (".zip",)
    """No other format is a plain zip; without the name, the members tell (``sniff``)."""
    extra = "huggingface"
    accelerated = True

    def is_available(self) -> bool:
        return has_module("tokenizers")

    def sniff(self, path: Path, head: bytes) -> bool:
        names = {PurePosixPath(m).name for m in zip_members(path, limit=1000)}
        return {"model.onnx", "tokenizer.json"} <= names

    def load(self, path: Path, options: LoadOptions,
             signature: Signature | None) -> HuggingFaceRuntime:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the server sizes its threads
        try:
            import tokenizers
        except ImportError:
            raise missing_extra("huggingface", "huggingface") from None

        with tempfile.TemporaryDirectory(prefix="model-manager-hf-") as work:
            folder = _unpacked(path, Path(work))
            config = _json_member(folder, "config.json")
            tokenizer_config = (_json_member(folder, "tokenizer_config.json")
                                if (folder / "tokenizer_config.json").is_file() else {})
            try:
                tokenizer = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
            except Exception as exc:  # the Rust side raises its own Exception
                raise InvalidArtifact(f"tokenizer.json is not a tokenizer: {_first_line(exc)}") from exc
            session = open_session(folder / "model.onnx", options,
                                   "model.onnx is not a loadable ONNX model")
        wanted = dict(signature.parameters) if signature is not None else {}
        model = TextModel.read(session, tokenizer, config, tokenizer_config, wanted)
        built = model.signature()
        if signature is not None and signature.inputs and (
                signature.inputs != built.inputs or signature.outputs != built.outputs):
            raise InvalidArtifact(f"a huggingface model's signature is read from its export: "
                                  f"{json.dumps(built.to_json())}; set 'normalize' or "
                                  f"'text_pairs' in the metadata instead")
        return HuggingFaceRuntime(model, built)


def options_signature(metadata: Mapping[str, Any]) -> Signature | None:
    """The parameters-only override that carries a version's ``normalize`` and ``text_pairs``
    metadata into its load (None when it sets neither)."""
    chosen = {key: metadata[key] for key in OPTIONS if key in metadata}
    for key, value in chosen.items():
        if not isinstance(value, bool):
            raise InvalidArtifact(f"metadata {key!r} must be true or false")
    return Signature((), (), chosen) if chosen else None


class TextModel:
    """A tokenizer and an ONNX graph, with what the config says of the task and labels."""

    def __init__(self, session: Any, tokenizer: Any, task: str, labels: list[str],
                 max_length: int, feeds: dict[str, Any], output: str, multi_label: bool,
                 normalize: bool, pairs: bool) -> None:
        self.session = session
        self.tokenizer = tokenizer
        self.task = task
        self.labels = labels
        self.max_length = max_length
        self.feeds = feeds
        """The graph's inputs among input_ids, attention_mask and token_type_ids, with dtypes."""
        self.output = output
        self.multi_label = multi_label
        self.normalize = normalize
        self.pairs = pairs
        self.hidden = 0

    @classmethod
    def read(cls, session: Any, tokenizer: Any, config: Mapping[str, Any],
             tokenizer_config: Mapping[str, Any], wanted: Mapping[str, Any]) -> TextModel:
        feeds = {}
        for arg in session.get_inputs():
            if arg.name not in _GRAPH_INPUTS:
                raise InvalidArtifact(f"model.onnx takes input {arg.name!r}; a text model takes "
                                      f"{', '.join(_GRAPH_INPUTS)}")
            if arg.type not in _INT_TYPES:
                raise InvalidArtifact(f"model.onnx input {arg.name!r} is {arg.type}, not integer")
            feeds[arg.name] = _INT_TYPES[arg.type]
        if "input_ids" not in feeds:
            raise InvalidArtifact("model.onnx takes no 'input_ids'")
        outputs = {arg.name: arg for arg in session.get_outputs()}
        task, output = _task(outputs, config)
        labels = _labels(config, outputs[output] if task != "feature-extraction" else None)
        _check_vocabulary(tokenizer, config)
        max_length = _max_length(config, tokenizer_config)
        model = cls(session, tokenizer, task, labels, max_length, feeds, output,
                    config.get("problem_type") == "multi_label_classification",
                    bool(wanted.get("normalize", False)), bool(wanted.get("text_pairs", False)))
        if task == "feature-extraction":
            hidden = outputs[output].shape[-1]
            model.hidden = hidden if isinstance(hidden, int) else int(config.get("hidden_size", -1))
        model._set_up_tokenizer(tokenizer_config)
        return model

    def _set_up_tokenizer(self, tokenizer_config: Mapping[str, Any]) -> None:
        pad = tokenizer_config.get("pad_token")
        pad_token = pad.get("content") if isinstance(pad, Mapping) else pad
        pad_token = pad_token if isinstance(pad_token, str) else "[PAD]"
        pad_id = self.tokenizer.token_to_id(pad_token)
        self.tokenizer.no_padding()
        self.tokenizer.enable_padding(pad_id=pad_id if pad_id is not None else 0,
                                      pad_token=pad_token)
        self.tokenizer.enable_truncation(self.max_length)

    def signature(self) -> Signature:
        inputs = [TensorSpec("text", "BYTES", (-1,))]
        if self.pairs:
            inputs.append(TensorSpec("text_pair", "BYTES", (-1,)))
        outputs: tuple[TensorSpec, ...]
        if self.task == "text-classification":
            outputs = (TensorSpec("label", "BYTES", (-1,)), TensorSpec("label_id", "INT64", (-1,)),
                       TensorSpec("probabilities", "FP32", (-1, len(self.labels))))
        elif self.task == "feature-extraction":
            outputs = (TensorSpec("embedding", "FP32", (-1, self.hidden)),)
        else:
            outputs = (TensorSpec("entities", "BYTES", (-1,)),)
        parameters: dict[str, Any] = {"task": self.task, "max_length": self.max_length}
        if self.labels:
            parameters["labels"] = self.labels
        if self.task == "feature-extraction":
            parameters["normalize"] = self.normalize
        if self.pairs:
            parameters["text_pairs"] = True
        return Signature(tuple(inputs), outputs, parameters)

    def run(self, texts: list[str], pairs: list[str] | None,
            outputs: Sequence[str]) -> dict[str, Array]:
        batch = list(zip(texts, pairs, strict=True)) if pairs is not None else texts
        if self.task == "token-classification":  # only it needs the character offsets
            encodings = self.tokenizer.encode_batch(batch)
        else:
            encodings = self.tokenizer.encode_batch_fast(batch)
        ids = np.array([e.ids for e in encodings])
        mask = np.array([e.attention_mask for e in encodings])
        columns = {"input_ids": ids, "attention_mask": mask,
                   "token_type_ids": np.array([e.type_ids for e in encodings])}
        feed = {name: columns[name].astype(dtype, copy=False) for name, dtype in self.feeds.items()}
        try:
            (result,) = self.session.run([self.output], feed)
        except Exception as exc:
            raise ModelError(f"onnxruntime failed: {_first_line(exc)}") from exc
        result = np.asarray(result, dtype=np.float32)
        if self.task == "text-classification":
            return self._classified(result, outputs)
        if self.task == "feature-extraction":
            return {"embedding": self._pooled(result, mask)}
        return {"entities": self._entities(result, encodings, texts)}

    def _classified(self, logits: Array, outputs: Sequence[str]) -> dict[str, Array]:
        scores: Array
        if self.multi_label or logits.shape[-1] == 1:
            scores = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
        else:
            scores = _softmax(logits)
        ids = scores.argmax(axis=-1).astype(np.int64)
        found: dict[str, Array] = {"label_id": ids, "probabilities": scores.astype(np.float32)}
        if "label" in outputs:
            found["label"] = np.array([self.labels[i].encode() for i in ids], dtype=object)
        return found

    def _pooled(self, states: Array, mask: Array) -> Array:
        weights = mask[..., None].astype(np.float32)
        summed = (np.asarray(states, dtype=np.float32) * weights).sum(axis=1)
        pooled: Array = summed / np.maximum(weights.sum(axis=1), 1e-9)
        if self.normalize:
            pooled = pooled / np.maximum(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)
        return np.asarray(pooled, dtype=np.float32)

    def _entities(self, logits: Array, encodings: list[Any], texts: list[str]) -> Array:
        scores = _softmax(logits)
        rows = []
        for row, encoding in enumerate(encodings):
            entities = []
            for i, (token, special) in enumerate(zip(encoding.tokens,
                                                     encoding.special_tokens_mask, strict=True)):
                if special or not encoding.attention_mask[i]:
                    continue
                label_id = int(scores[row, i].argmax())
                start, end = encoding.offsets[i]
                entities.append({"token": token, "label": self.labels[label_id],
                                 "score": float(scores[row, i, label_id]),
                                 "start": start, "end": end, "word": texts[row][start:end]})
            rows.append(json.dumps(entities).encode())
        return np.array(rows, dtype=object)


class HuggingFaceRuntime:
    def __init__(self, model: TextModel, signature: Signature) -> None:
        self._model = model
        self.signature = signature

    def predict(self, inputs: Tensors, outputs: Sequence[str]) -> dict[str, Array]:
        texts = _texts("text", inputs["text"])
        pairs = _texts("text_pair", inputs["text_pair"]) if "text_pair" in inputs else None
        if pairs is not None and len(pairs) != len(texts):
            raise InvalidInput(f"'text_pair' holds {len(pairs)} texts for {len(texts)} in 'text'")
        found = self._model.run(texts, pairs, outputs)
        return {name: found[name] for name in outputs}

    def unload(self) -> None:
        self._model.session = None


def _texts(name: str, array: Array) -> list[str]:
    if array.ndim != 1:
        raise InvalidInput(f"input {name!r} is a list of texts, shape [-1]; got {list(array.shape)}")
    if array.size == 0:
        raise InvalidInput(f"input {name!r} holds no text; send at least one")
    texts = []
    for index, value in enumerate(array.tolist()):
        try:
            texts.append(value.decode("utf-8") if isinstance(value, bytes) else str(value))
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"input {name!r}: element {index} is not UTF-8 text "
                               f"({exc.reason} at byte {exc.start})") from None
    return texts


def _unpacked(path: Path, work: Path) -> Path:
    """The export's folder, unpacked into ``work``: the required members and the known optional
    ones (and ONNX external data), at the zip's root or under one folder."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if not n.endswith("/")]
            prefix = _prefix(names)
            missing = [m for m in REQUIRED if prefix + m not in names]
            if missing:
                raise InvalidArtifact(f"a huggingface export needs {', '.join(REQUIRED)}; the "
                                      f"zip lacks {', '.join(missing)}")
            for name in names:
                member = name[len(prefix):]
                if name.startswith(prefix) and "/" not in member and (
                        member in REQUIRED + OPTIONAL or member.startswith("model.onnx")):
                    (work / member).write_bytes(archive.read(name))
    except zipfile.BadZipFile as exc:
        raise InvalidArtifact(f"a huggingface model is a zip of its export folder: {exc}") from exc
    return work


def _prefix(names: list[str]) -> str:
    """``folder/`` when the export sits in one folder of the zip, else ``''``."""
    for name in names:
        if PurePosixPath(name).name == "model.onnx":
            parent = str(PurePosixPath(name).parent)
            return "" if parent == "." else parent + "/"
    return ""


def _json_member(folder: Path, name: str) -> dict[str, Any]:
    try:
        data = json.loads((folder / name).read_text("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArtifact(f"{name} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidArtifact(f"{name} must hold a JSON object")
    return data


def _task(outputs: Mapping[str, Any], config: Mapping[str, Any]) -> tuple[str, str]:
    architectures = " ".join(str(a) for a in config.get("architectures") or [])
    if "logits" in outputs:
        rank = len(outputs["logits"].shape or [])
        if rank == 2 and "TokenClassification" not in architectures:
            return "text-classification", "logits"
        if rank == 3 and "SequenceClassification" not in architectures:
            return "token-classification", "logits"
        raise InvalidArtifact(f"model.onnx's 'logits' have rank {rank}, which fits no task "
                              f"this format serves ({', '.join(TASKS)}) for {architectures!r}")
    if "last_hidden_state" in outputs:
        return "feature-extraction", "last_hidden_state"
    raise InvalidArtifact(f"model.onnx has outputs {sorted(outputs)}; a text model gives 'logits' "
                          "(classification) or 'last_hidden_state' (feature extraction)")


def _labels(config: Mapping[str, Any], logits: Any) -> list[str]:
    if logits is None:
        return []
    count = logits.shape[-1]
    raw = config.get("id2label") or {}
    try:
        by_id = {int(k): str(v) for k, v in raw.items()}
    except (AttributeError, ValueError):
        raise InvalidArtifact("config.json's id2label must map label ids to names") from None
    if not isinstance(count, int):
        count = len(by_id)
    if not count:
        raise InvalidArtifact("cannot tell how many labels the model has: config.json has no "
                              "id2label and the graph's logits have no fixed size")
    if by_id and set(by_id) != set(range(count)):
        raise InvalidArtifact(f"config.json's id2label names ids {sorted(by_id)}, but the model "
                              f"gives {count} scores")
    return [by_id.get(i, f"LABEL_{i}") for i in range(count)]


def _check_vocabulary(tokenizer: Any, config: Mapping[str, Any]) -> None:
    size = config.get("vocab_size")
    if not isinstance(size, int):
        raise InvalidArtifact("config.json gives no integer 'vocab_size'")
    tokens = tokenizer.get_vocab_size(with_added_tokens=True)
    if tokens > size:
        raise InvalidArtifact(f"the tokenizer has {tokens} tokens but the model's vocabulary "
                              f"has {size}: they come from different models")


def _max_length(config: Mapping[str, Any], tokenizer_config: Mapping[str, Any]) -> int:
    lengths = [v for v in (tokenizer_config.get("model_max_length"),
                           config.get("max_position_embeddings"))
               if isinstance(v, int | float) and 0 < v < UNSET_MAX_LENGTH]
    if not lengths:
        raise InvalidArtifact("cannot tell the model's maximum length: give model_max_length "
                              "in tokenizer_config.json or max_position_embeddings in config.json")
    return int(min(lengths))


def _softmax(logits: Array) -> Array:
    shifted: Array = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=-1, keepdims=True))


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
