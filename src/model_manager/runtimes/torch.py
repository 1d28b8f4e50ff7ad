"""PyTorch models: TorchScript archives (``torch.jit.save``) and ``torch.export`` programs (``.pt2``).

Neither format is an arbitrary pickle: TorchScript code is TorchScript, and exported programs
load their weights with ``weights_only`` semantics. Plain ``torch.save`` pickles of modules are
not accepted. A ``.pt2`` program carries its signature; a TorchScript archive does not, so its
upload must give one in its metadata. Inputs are passed positionally in signature order; outputs
(a tensor or a tuple of tensors) are named by the signature in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from model_manager.devices import release_device_memory
from model_manager.errors import InvalidArtifact, ModelError, Unavailable
from model_manager.runtimes.archive import has_module, missing_extra, zip_members
from model_manager.runtimes.base import LoadOptions
from model_manager.runtimes.signature import Signature, TensorSpec, datatype_of
from model_manager.types import Array, Tensors


class TorchFormat:
    name = "torch"
    platform = "pytorch"
    suffixes = (".pt", ".pt2", ".torchscript")
    extra = "torch"
    accelerated = True

    def is_available(self) -> bool:
        return has_module("torch")

    def sniff(self, path: Path, head: bytes) -> bool:
        members = zip_members(path)
        return any(m.endswith(("/archive_format", "/data.pkl")) for m in members)

    def load(self, path: Path, options: LoadOptions, signature: Signature | None) -> TorchRuntime:
        try:
            import torch
        except ImportError:
            raise missing_extra("torch", "torch") from None
        torch.set_num_threads(options.threads)  # process-wide in PyTorch: one setting for all
        if options.device != "cpu" and not torch.cuda.is_available():
            raise Unavailable(f"this PyTorch cannot run models on {options.device} (a CPU build, "
                              "or no CUDA device): install a CUDA build of torch", retry_after=60)
        is_exported = any(m.endswith("/archive_format") for m in zip_members(path))
        try:
            if is_exported:
                with open(path, "rb") as f:  # a blob's name lacks the .pt2 suffix
                    program = torch.export.load(f)
                module, read = program.module(), _exported_signature(program)
            else:
                module = torch.jit.load(str(path), map_location=options.device)  # type: ignore[no-untyped-call]
                read = None
        except Exception as exc:  # torch raises RuntimeError and friends on a bad archive
            raise InvalidArtifact(f"not a loadable TorchScript or torch.export file: "
                                  f"{str(exc).strip().splitlines()[0][:300]}") from exc
        chosen = signature or read
        if chosen is None:
            raise InvalidArtifact("a TorchScript model does not carry its signature: give one in "
                                  "the upload's metadata ({\"signature\": {\"inputs\": [...], "
                                  "\"outputs\": [...]}})")
        if not is_exported:  # an exported program is already in inference form (no .eval())
            module.eval()
        elif options.device != "cpu":
            module = module.to(options.device)
        return TorchRuntime(module, chosen, options.device)

    def first_use(self, device: str) -> None:
        """PyTorch's first use of a CUDA device: the state it keeps for the process's life
        (its cuBLAS handle and workspace), which the server is charged, not the first model."""
        import torch

        square = torch.ones((64, 64), device=device)
        (square @ square).sum().item()


class TorchRuntime:
    def __init__(self, module: Any, signature: Signature, device: str) -> None:
        self._module = module
        self.signature = signature
        self._device = device

    def predict(self, inputs: Tensors, outputs: Sequence[str]) -> dict[str, Array]:
        import torch

        args = [torch.from_numpy(np.ascontiguousarray(inputs[t.name])).to(self._device)
                for t in self.signature.inputs]
        try:
            with torch.inference_mode():
                raw = self._module(*args)
        except Exception as exc:  # a model raises whatever its code raises
            raise ModelError(f"PyTorch failed: {str(exc).strip().splitlines()[0][:300]}") from exc
        values = raw if isinstance(raw, list | tuple) else [raw]
        produced = {spec.name: value.detach().cpu().numpy()
                    for spec, value in zip(self.signature.outputs, values, strict=False)}
        return {name: produced[name] for name in outputs if name in produced}

    def unload(self) -> None:
        self._module = None
        if self._device != "cpu":  # PyTorch keeps freed blocks cached for its next allocation
            release_device_memory()


def _exported_signature(program: Any) -> Signature:
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    inputs = tuple(_spec(name, placeholders[name].meta.get("val"))
                   for name in program.graph_signature.user_inputs)
    output_node = next(n for n in program.graph.nodes if n.op == "output")
    values = output_node.meta.get("val")
    values = values if isinstance(values, list | tuple) else [values]
    names = list(program.graph_signature.user_outputs)
    outputs = tuple(_spec(name, value) for name, value in zip(names, values, strict=False))
    return Signature(inputs, outputs)


def _spec(name: str, value: Any) -> TensorSpec:
    if value is None or not hasattr(value, "shape"):
        raise InvalidArtifact(f"the exported program's {name!r} is not a tensor; give a "
                              "'signature' in the upload's metadata")
    shape = tuple(d if isinstance(d, int) else -1 for d in value.shape)
    dtype = np.dtype(str(value.dtype).removeprefix("torch."))
    return TensorSpec(name, datatype_of(dtype), shape)
