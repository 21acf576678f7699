"""Encoders on ONNX Runtime: export a fine-tuned BERT-style encoder to ONNX, quantise it to
int8, and run it in place of PyTorch. Used for the classifier's encoder and for the matter
encoder (``model.matter``).

The graph takes a batch of windows (``input_ids``, ``attention_mask``, ``token_type_ids``;
the windows and tokens axes are dynamic) and returns each window's token-mean vector, as
:meth:`TriageModel.window_vectors` does. Pooling windows into letters and the heads stay in
PyTorch (:func:`model.network.pool_windows`, :meth:`TriageModel.head_logits`), so both
runtimes share them.

The int8 graph is the fp32 graph after dynamic quantisation: int8 weights with one scale per
output channel (on the dev set, one scale per tensor changed the answers of ~10% of the
letters, per channel ~4%), activations quantised per batch at run time. (ONNX Runtime's
transformer fusions were tried before quantising: no faster on this graph, so not applied.)

Every graph records the sha256 of the weights it was exported from; loading refuses a graph
exported from other weights (a model retrained or replaced since the export).

Example::

    export_onnx(model.encoder, tokenizer.max_length, Path("models/letters"), weights_sha256)
    encoder = OnnxEncoder.load(Path("models/letters") / INT8_FILE, weights_sha256)
    windows = encoder(chunks.input_ids, chunks.attention_mask, chunks.token_type_ids)
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from torch import nn
from torch.export import Dim

from model.network import token_mean

logger = logging.getLogger(__name__)

ENCODER_FILE = "encoder.onnx"
INT8_FILE = "encoder.int8.onnx"
WEIGHTS_KEY = "weights_sha256"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
THREADS = 2  # the machines this runs on have 2 cores
# ONNX Runtime's fused residual-add + LayerNorm kernel took 7x as long as its plain
# LayerNorm here (28 ms against 4 on the dev letters): without the fusion the int8 encoder
# reads 28% more letters a second at batch 8 (docs/benchmarks.md, session 7)
DISABLED_FUSIONS = ("SkipLayerNormFusion",)
EXPORT_TOLERANCE = 1e-3  # largest difference from PyTorch accepted for the fp32 graph


class OnnxModelError(ValueError):
    """An ONNX graph that is missing, unreadable, or exported from other weights."""


class _WindowGraph(nn.Module):
    """What is exported: token ids of windows in, token-mean vectors out."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> torch.Tensor:
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=token_type_ids)
        return token_mean(out.last_hidden_state, attention_mask)


def _save_with_hash(graph: onnx.ModelProto, path: Path, weights_sha256: str) -> None:
    onnx.helper.set_model_props(graph, {WEIGHTS_KEY: weights_sha256})
    onnx.save_model(graph, str(path))


def _example(max_tokens: int, vocab_size: int) -> dict[str, np.ndarray]:
    """Three full windows of varied token ids, the first padded after five tokens."""
    ids = (np.arange(3 * max_tokens, dtype=np.int64).reshape(3, max_tokens) * 7) % (vocab_size - 1) + 1
    mask = np.ones_like(ids)
    mask[0, 5:] = 0
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def export_encoder(encoder: nn.Module, max_tokens: int, path: Path, weights_sha256: str) -> Path:
    """Export a BERT-style encoder and token-mean pooling (windows of at most ``max_tokens``)
    as an fp32 ONNX graph and check it against PyTorch on a padded batch.

    Raises:
        OnnxModelError: the graph's vectors differ from PyTorch's by more than
            ``EXPORT_TOLERANCE``.
    """
    graph = _WindowGraph(copy.deepcopy(encoder)).eval()  # the caller's encoder keeps its attention
    config = graph.encoder.config
    max_tokens = min(max_tokens, config.max_position_embeddings)
    example = _example(max_tokens, config.vocab_size)
    tensors = tuple(torch.from_numpy(example[name]) for name in INPUTS)
    windows, tokens = Dim("windows"), Dim("tokens", max=max_tokens)
    with torch.no_grad():
        expected = graph(*tensors).numpy()
        # eager attention exports as plain MatMul/Softmax; PyTorch's fused attention exports
        # with masking (Where, IsNaN) that took ~15% of the int8 graph's time
        graph.encoder.set_attn_implementation("eager")
        program = torch.onnx.export(
            graph, tensors, dynamo=True, input_names=list(INPUTS),
            output_names=["window_vectors"], external_data=False, verbose=False,
            dynamic_shapes=tuple({0: windows, 1: tokens} for _ in INPUTS))
    if program is None:  # only the legacy exporter returns None
        raise OnnxModelError("torch.onnx.export returned no program")
    _save_with_hash(program.model_proto, path, weights_sha256)
    found = _session(path).run(None, example)[0]
    difference = float(np.abs(found - expected).max())
    if difference > EXPORT_TOLERANCE:
        path.unlink()
        raise OnnxModelError(f"the exported graph's vectors differ from PyTorch's by {difference:.2e} "
                             f"(expected at most {EXPORT_TOLERANCE:.0e}); the export is not usable")
    logger.info("fp32 graph in %s (largest difference from PyTorch %.1e)", path, difference)
    return path


def quantise_encoder(source: Path, target: Path, weights_sha256: str) -> Path:
    """Quantise an fp32 graph to int8 (QInt8 weights per output channel, dynamic activation
    scales)."""
    quantize_dynamic(source, target, weight_type=QuantType.QInt8, per_channel=True)
    _save_with_hash(onnx.load_model(str(target)), target, weights_sha256)
    logger.info("int8 graph in %s", target)
    return target


def export_onnx(encoder: nn.Module, max_tokens: int, directory: Path,
                weights_sha256: str) -> tuple[Path, Path]:
    """Write ``encoder.onnx`` (fp32) and ``encoder.int8.onnx`` into a model directory.

    Args:
        encoder: the trained BERT-style encoder (``TriageModel.encoder``, ``MatterEncoder.model``).
        max_tokens: the longest window it is given.
        directory: the model directory the weights come from.
        weights_sha256: sha256 of the directory's weights, recorded in both graphs.
    """
    fp32 = export_encoder(encoder, max_tokens, directory / ENCODER_FILE, weights_sha256)
    return fp32, quantise_encoder(fp32, directory / INT8_FILE, weights_sha256)


def _session(path: Path, threads: int = THREADS) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # no spinning between runs: the classifier's and the matter encoder's sessions run one
    # after the other, and threads left spinning took the cores from the next (a letter
    # analysed in 95 ms instead of 52)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"],
                                disabled_optimizers=list(DISABLED_FUSIONS))


class OnnxEncoder:
    """Token-mean vectors of windows from an ONNX Runtime session (CPU).

    Called like :meth:`TriageModel.window_vectors`: three (windows × tokens) int64 tensors
    in, a (windows × hidden) float tensor out.
    """

    def __init__(self, session: ort.InferenceSession) -> None:
        self.session = session

    @classmethod
    def load(cls, path: Path, weights_sha256: str, threads: int = THREADS) -> OnnxEncoder:
        """Open a graph written by :func:`export_onnx` for the weights whose hash is given.

        Raises:
            OnnxModelError: the file is missing or unreadable, or was exported from other weights.
        """
        export = f"export it with 'triage export-onnx --model {path.parent}'"
        if not path.is_file():
            raise OnnxModelError(f"no {path.name}; {export}")
        try:
            session = _session(path, threads)
        except Exception as err:  # noqa: BLE001 - onnxruntime's errors share no base class
            raise OnnxModelError(f"cannot read {path.name} ({err}); {export} again") from None
        found = session.get_modelmeta().custom_metadata_map.get(WEIGHTS_KEY)
        if found != weights_sha256:
            raise OnnxModelError(
                f"{path.name} was exported from other weights (sha256 {str(found)[:12]}…, "
                f"model.safetensors has {weights_sha256[:12]}…): the model changed since; "
                f"{export} again")
        return cls(session)

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 token_type_ids: torch.Tensor) -> torch.Tensor:
        feed = {name: tensor.numpy() for name, tensor in
                zip(INPUTS, (input_ids, attention_mask, token_type_ids), strict=True)}
        return torch.from_numpy(self.session.run(None, feed)[0])
