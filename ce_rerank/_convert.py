"""Converting a loaded torch cross-encoder to an OpenVINO cache entry (the first start only).

``torch.export.export`` (non-strict, dynamic batch and sequence) then ``openvino.convert_model``:
converting the module directly (``example_input=``) fails inside transformers' mask builder.
The converted model is checked against the torch path's own scores on a probe batch before it
is written; ``quantize="int8"`` adds NNCF static quantisation.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from ._openvino import _FORMAT, _INPUTS, INSTALL, PairTokenizer

_PROBE = [
    ("what is a cross-encoder?", "A cross-encoder reads the query and the passage together and scores the pair."),
    ("reranking", "Short."),
    ("capital of France", "Paris is the capital and the largest city of France, on the river Seine."),
]


def _logits_module(hf: Any, inputs: list[str]) -> Any:
    import torch

    class Logits(torch.nn.Module):
        """The sequence classifier's logits from keyword tensors (what torch.export traces)."""

        def __init__(self) -> None:
            super().__init__()
            self.model = hf

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
        ) -> torch.Tensor:
            features = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            return self.model(**{n: features[n] for n in inputs}).logits

    return Logits().eval()


def calibration_pairs() -> list[tuple[str, str]]:
    """(query, passage) pairs for int8 calibration: every demo query against every demo passage.

    The demo collection (ce_rerank/data/demo: 7 everyday questions, 42 passages, relevant and not)
    ships with the package, so no user data or download is needed; each query meets its own
    answers and many unrelated passages, the two kinds of pair a reranker sees, at passage length
    (about 40-80 tokens), plus seven passages joined (about 400 tokens, cut at the model window) for
    the length of retrieved abstracts.
    """
    from importlib.resources import files

    demo = files("ce_rerank") / "data" / "demo"
    passages = []
    for line in (demo / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        passages.append(" ".join(x for x in (d.get("title") or "", d.get("text") or "") if x))
    queries = [json.loads(line)["text"] for line in (demo / "queries.jsonl").read_text(encoding="utf-8").splitlines()]
    joined = [" ".join(passages[i : i + 7]) for i in range(0, len(passages), 7)]
    return [(q, p) for q in queries for p in passages + joined]


def convert(lm: Any, out: Path, *, quantize: str) -> None:
    """Write ``lm`` (the torch path's float32 loaded model, rewrites applied) as an entry in ``out``."""
    import openvino
    import torch

    ce = lm.model
    hf = ce.model
    tokenizer = ce.tokenizer
    names = [n for n in _INPUTS if n in tokenizer.model_input_names]
    out.mkdir(parents=True)
    backend = tokenizer.backend_tokenizer
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(backend.to_str())
    tok.no_truncation()
    tok.no_padding()
    tok.save(str(out / "tokenizer.json"))
    meta = {
        "format": _FORMAT,
        "architecture": type(hf).__name__,
        "inputs": names,
        "num_labels": lm.num_labels,
        "max_length": lm.max_length,
        "pad_id": int(tokenizer.pad_token_id),
        "pad_token": str(tokenizer.pad_token),
        "pad_type_id": int(getattr(tokenizer, "pad_token_type_id", 0) or 0),
        "padding_side": str(tokenizer.padding_side),
        "first_token_layer": any(type(m).__name__ == "FirstTokenLayer" for m in hf.modules()),
        "quantize": quantize,
        "prompts": dict(getattr(ce, "prompts", None) or {}),
        "default_prompt_name": getattr(ce, "default_prompt_name", None),
        "openvino": openvino.__version__,
    }
    pairs = PairTokenizer(out / "tokenizer.json", meta)
    probe = pairs.pairs(*_probe_args())
    example = {n: torch.from_numpy(probe[n]) for n in names}
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence", max=lm.max_length)
    module = _logits_module(hf, names)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        exported = torch.export.export(
            module, (), kwargs=example, dynamic_shapes={n: {0: batch, 1: seq} for n in names}, strict=False
        )
        ov_model = openvino.convert_model(exported)
    if quantize == "int8":
        ov_model = _quantize_int8(ov_model, pairs)
    _check(ov_model, ce, probe, names, lm, exact=quantize != "int8")
    openvino.save_model(ov_model, str(out / "model.xml"), compress_to_fp16=False)
    (out / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")  # last: marks the entry whole


def _probe_args() -> tuple[str, list[str]]:
    # one query, passages of different lengths: padding and masking are exercised
    return _PROBE[0][0], [p for _, p in _PROBE]


def _check(ov_model: Any, ce: Any, probe: dict[str, Any], names: list[str], lm: Any, *, exact: bool) -> None:
    """The converted model must give the torch path's logits on the probe batch (float32)."""
    import numpy as np
    import torch

    from ._openvino import _core

    compiled = _core().compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got = compiled.create_infer_request().infer({n: probe[n] for n in names})[0]
    query, texts = _probe_args()
    features = ce.preprocess([(query, t) for t in texts])
    with torch.inference_mode():
        want = ce(features)["scores"].float().reshape(len(texts), -1).numpy()
    # int8 changes the scores by design (the fidelity gate judges it): there, only the shape and finiteness
    close = np.allclose(got, want, atol=1e-4, rtol=1e-4) if exact else bool(np.isfinite(got).all())
    if got.shape != want.shape or not close:
        raise RuntimeError(
            f"the OpenVINO conversion gives other scores than torch on a probe batch ({got.ravel()} vs {want.ravel()})"
        )


def _quantize_int8(ov_model: Any, pairs: PairTokenizer) -> Any:
    """NNCF static int8 (transformer preset), calibrated on :func:`calibration_pairs`."""
    try:
        import nncf
    except ImportError as exc:
        raise ImportError(f"quantize='int8' on OpenVINO needs NNCF, which is not installed: {INSTALL}") from exc

    batches = [pairs.pairs(q, [p]) for q, p in calibration_pairs()]
    dataset = nncf.Dataset(batches)
    return nncf.quantize(ov_model, dataset, model_type=nncf.ModelType.TRANSFORMER, subset_size=len(batches))
