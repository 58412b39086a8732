"""all-MiniLM-L6-v2 run by onnxruntime, for small batches such as search queries.

A query of a few words costs torch far more in per-operator overhead than in arithmetic:
timed in one process, one thread, onnxruntime took 0.35x torch's CPU for one 8-word
query and 0.56-0.68x for 8 short ones, while torch stayed ahead on the long, full batches
of a document's chunks (onnxruntime 1.07x at 32 texts of 48 words, 1.2-1.5x at 192
words); ``python -m bench.model_process`` measures the query side. So the local model
encodes a batch of at most ``SMALL_BATCH_TOKENS`` tokens here and anything larger with
torch; the two give the same vectors to within 2e-7.

This module imports torch and onnxruntime: it is imported when the model loads.
The ONNX graph is exported from the bundled weights when the model loads (in memory,
2-4 s here; nothing is downloaded or written): the same tokenizer, the BERT encoder, mean
pooling over the attention mask and L2 normalisation, as sentence-transformers does.
"""

from __future__ import annotations

import io
import warnings
from typing import TYPE_CHECKING, cast

import numpy as np
import onnxruntime
import torch

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from syntera.kb.embeddings import Vectors

SMALL_BATCH_TOKENS = 256  # texts x padded length: below the crossover timed above
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class OnnxMiniLM:
    """The exported model, with the tokenizer of the sentence-transformers one."""

    def __init__(self, model: SentenceTransformer, threads: int | None) -> None:
        self.tokenizer = model.tokenizer
        self.max_length = model.max_seq_length
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or 0  # 0: onnxruntime's default, every core
        options.inter_op_num_threads = 1
        self.session: onnxruntime.InferenceSession = onnxruntime.InferenceSession(
            _export(model), options, providers=["CPUExecutionProvider"]
        )

    def tokens(self, texts: list[str]) -> dict[str, np.ndarray]:
        """The padded, truncated inputs of ``texts``, as the model reads them."""
        features = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="np"
        )
        return {name: np.asarray(features[name], dtype=np.int64) for name in INPUTS}

    @staticmethod
    def takes(features: dict[str, np.ndarray]) -> bool:
        """Whether a batch is small enough to be cheaper here than on torch."""
        return bool(features["input_ids"].size <= SMALL_BATCH_TOKENS)

    def encode(self, features: dict[str, np.ndarray]) -> Vectors:
        (vectors,) = self.session.run(None, features)
        return np.asarray(vectors, dtype=np.float32)


def _export(model: SentenceTransformer) -> bytes:
    encoder = cast(torch.nn.Module, model[0].auto_model).eval()
    example = {
        name: torch.as_tensor(values)
        for name, values in model.tokenizer(["an example"], return_tensors="np").items()
        if name in INPUTS
    }
    graph = io.BytesIO()
    axes = {name: {0: "texts", 1: "tokens"} for name in INPUTS}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        # The tracer warns about Python conditions it freezes: the ones in transformers'
        # masking are about causal and cached attention, which this encoder never uses.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Pooled(encoder),
            tuple(example[name] for name in INPUTS),
            graph,  # type: ignore[arg-type]  # the TorchScript exporter writes to a BytesIO too
            input_names=list(INPUTS),
            output_names=["vectors"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,  # the TorchScript exporter: the dynamo one needs onnxscript
        )
    return graph.getvalue()


class _Pooled(torch.nn.Module):
    """The encoder, then sentence-transformers' mean pooling and normalisation."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        states = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        means = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(means, dim=1)
