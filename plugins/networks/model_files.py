"""The networks of the model-file backbones: an ONNX graph run by onnxruntime, a TorchScript module (see
plugins/onnx_models.py for how their input convention is chosen)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lrbench import DataError, InputSpec, UsageError, warn

from ..onnx_graph import InputStage, channel_values, input_stage
from ..onnx_models import INSTALL, PRESETS, registered_backbones


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _dims(shape) -> str:
    """An ONNX shape for messages: fixed sizes as numbers, named (dynamic) ones by name, unnamed as ?."""
    return "×".join(str(d) if isinstance(d, int) else (d or "?") for d in shape)


class OnnxNetwork(nn.Module):
    """An ONNX face network as a PyTorch module: N×3×H×W float batch → N×D embeddings (its first output).

    onnxruntime runs it on the CPU, or with the CUDA execution provider when the batch is on a CUDA
    device and the installed onnxruntime has it. A graph with a fixed batch size gets the batch in
    pieces of that size, the last one padded (the padding's rows are dropped); ``--batch-size auto`` hands
    such a graph many faces per call (lrbench/eval/batching.py), so lrbench's per-call work is shared.
    """

    def __init__(self, path: Path, spec: InputSpec, convention_name: str):
        super().__init__()
        try:
            import onnxruntime
        except ImportError:
            raise UsageError(f"backbone 'onnx' needs onnxruntime: {INSTALL}") from None
        self.ort, self.weights_file, self.convention = onnxruntime, path, convention_name
        self.sessions: dict[str, Any] = {}
        self.warned_precision = False
        session = self._session("cpu")
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1:
            names = ", ".join(f"{i.name} {_dims(i.shape)}" for i in inputs)
            raise DataError(f"{path}: the graph has {len(inputs)} inputs ({names}); lrbench feeds one N×3×H×W batch")
        graph_input, output = inputs[0], outputs[0]
        shape = graph_input.shape
        if len(shape) != 4 or shape[1] != 3:
            raise DataError(f"{path}: the graph's input {graph_input.name!r} is {_dims(shape)}, not N×3×H×W")
        if len(output.shape) != 2:
            raise DataError(f"{path}: the graph's output {output.name!r} is {_dims(output.shape)}, not N×D")
        types = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
        if graph_input.type not in types:
            raise DataError(f"{path}: the graph's input {graph_input.name!r} is {graph_input.type}, not float")
        height, width = shape[2:]
        crop_size = spec.template.size
        if all(isinstance(d, int) for d in (height, width)) and (width, height) != crop_size:
            conventions = {**PRESETS, **{name: spec.input for name, spec in registered_backbones().items()}}
            fitting = [name for name, spec in conventions.items() if spec.template.size == (width, height)]
            raise UsageError(
                f"--weights {path}: the graph takes {width}×{height} crops (input {_dims(shape)}) but the convention "
                f"({convention_name}) crops {crop_size[0]}×{crop_size[1]}; presets of its size: "
                f"{', '.join(fitting) or 'none (give template=…)'}"
            )
        self.input_name, self.output_name, self.dtype = graph_input.name, output.name, types[graph_input.type]
        self.fixed_batch = shape[0] if isinstance(shape[0], int) else None  # lrbench's batching reads it too
        self.shapes = {"input": _dims(shape), "output": _dims(output.shape)}
        self.start = self._input_stage()
        self._check_normalisation(spec, convention_name)

    def _input_stage(self) -> InputStage:
        try:
            return input_stage(self.weights_file, self.input_name)
        except ValueError as exc:  # onnxruntime read the file, so this reader is at fault: say so and go on
            warn(f"{self.weights_file}: cannot tell whether the graph normalises its input ({exc})")
            return InputStage(None, None)

    def _check_normalisation(self, spec: InputSpec, convention_name: str) -> None:
        """Refuse to normalise twice a graph that normalises its input itself; warn about unnormalised pixels fed
        to a graph that does not (preset insightface-mxnet given a file exported from PyTorch)."""
        inside, path = self.start.normalisation, self.weights_file
        raw = (0.0,) * 3, (255.0 if inside and inside.in_unit_range else 1.0,) * 3  # what feeds it as it is
        values = "0…1 values" if raw[1][0] == 255 else "0…255 pixels"
        if inside and (spec.mean, spec.std) != raw:
            raise UsageError(
                f"--weights {path}: the graph normalises its input itself ({inside.describe()}), so the convention "
                f"({convention_name}: mean {channel_values(spec.mean)}, std {channel_values(spec.std)}) would "
                f"normalise it twice; add --option mean=0 --option std={raw[1][0]:g} to give it the {values} it expects"
            )
        if not inside and (spec.mean, spec.std) == ((0.0,) * 3, (1.0,) * 3) and self.start.first_op not in (
            None, "BatchNormalization"
        ):
            warn(
                f"{path}: the convention ({convention_name}) feeds the graph unnormalised 0…255 pixels, but its first "
                f"node ({self.start.first_op}) does not normalise them: check that the model was trained on such input"
            )

    def _session(self, device_type: str):
        """An inference session for the device the batches are on (made once per device type)."""
        if device_type not in self.sessions:
            providers = ["CPUExecutionProvider"]
            if device_type == "cuda":
                if "CUDAExecutionProvider" in self.ort.get_available_providers():
                    providers.insert(0, "CUDAExecutionProvider")
                else:
                    warn("onnxruntime has no CUDA execution provider here: the ONNX model runs on the CPU "
                         "(pip install onnxruntime-gpu)")
            options = self.ort.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()  # as many threads as PyTorch would use
            try:
                self.sessions[device_type] = self.ort.InferenceSession(
                    str(self.weights_file), options, providers=providers
                )
            except Exception as exc:  # onnxruntime raises its own exception types for unreadable files
                raise DataError(f"{self.weights_file}: not a usable ONNX model ({_first_line(exc)})") from None
        return self.sessions[device_type]

    @property
    def provenance(self) -> dict[str, Any]:
        """For the manifest: the graph's input and output, the convention and what ran it."""
        return {
            "format": "onnx",
            "input_name": self.input_name,
            "input_shape": self.shapes["input"],
            "output_name": self.output_name,
            "output_shape": self.shapes["output"],
            "convention": self.convention,
            "graph_normalises_input": self.start.normalisation.describe() if self.start.normalisation else None,
            "onnxruntime": self.ort.__version__,
            "providers": {device: session.get_providers()[0] for device, session in self.sessions.items()},
        }

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        if torch.is_autocast_enabled(batch.device.type) and not self.warned_precision:
            warn("--precision does not apply to an ONNX model: onnxruntime runs it in the graph's own precision")
            self.warned_precision = True
        session = self._session(batch.device.type)
        images = np.ascontiguousarray(batch.detach().float().cpu().numpy(), dtype=self.dtype)
        step = self.fixed_batch or max(len(images), 1)
        out = None  # filled piece by piece: a fixed-batch graph runs many pieces per call
        for start in range(0, len(images), step):
            piece = images[start : start + step]  # a view: no copy
            if len(piece) < step:  # a fixed-batch graph: pad the last piece and drop the padding's rows
                piece = np.concatenate([piece, np.zeros((step - len(piece), *piece.shape[1:]), piece.dtype)])
            try:
                result = session.run([self.output_name], {self.input_name: piece})[0]
            except Exception as exc:  # onnxruntime's own exception types: a graph that cannot take this batch
                shape = "×".join(map(str, piece.shape))
                problem = _first_line(exc)
                raise DataError(f"{self.weights_file}: onnxruntime fails on a {shape} batch ({problem})") from None
            if out is None:
                out = np.empty((len(images), *result.shape[1:]), np.float32)
            out[start : start + step] = result[: len(images) - start]
        return torch.from_numpy(out).to(batch.device)


class ScriptedNetwork(nn.Module):
    """A TorchScript face network (``torch.jit.save`` of a traced or scripted model) that must give N×D."""

    def __init__(self, path: Path, network: torch.jit.ScriptModule, convention_name: str):
        super().__init__()
        self.network, self.weights_file, self.convention = network, path, convention_name

    @property
    def provenance(self) -> dict[str, Any]:
        return {"format": "torchscript", "convention": self.convention, "torch": torch.__version__}

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        out = self.network(batch)
        if not isinstance(out, torch.Tensor) or out.dim() != 2:
            got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise DataError(f"{self.weights_file}: the model's output is {got}, not N×D")
        return out


def torchscript(path: Path, convention_name: str) -> ScriptedNetwork:
    """The TorchScript model in ``path`` (a zip archive, checked by the caller), loaded on the CPU."""
    try:
        with warnings.catch_warnings():  # torch deprecates TorchScript: nothing a user with a .pt file can act on
            warnings.simplefilter("ignore", FutureWarning)
            network = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # torch's reader fails with several exception types
        raise DataError(
            f"{path}: not a TorchScript model ({_first_line(exc)}); a state dict needs its own backbone"
        ) from None
    return ScriptedNetwork(path, network, convention_name)
