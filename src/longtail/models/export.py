"""Take a trained classifier out of longtail: a plain state dict, a TorchScript module, an ONNX model (when the
optional ``onnx`` / ``onnxscript`` packages are installed: ``pip install longtail[export]``) and a JSON card.

The JSON card says what a user of the exported files needs and cannot guess: the architecture and its
options (to rebuild it with ``longtail.models.create_model``), class names and training counts (for a
test-time prior or logit adjustment), the input size and the normalisation the model expects. The
exported model returns plain logits: a training-time prior correction (Balanced Softmax's + log n) is
not part of the model, as in the papers' test protocol.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

STATE, TORCHSCRIPT, ONNX, CARD = "model_state.pt", "model.torchscript.pt", "model.onnx", "model.json"


def onnx_available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        return False
    return True


def export_onnx(model: nn.Module, example: torch.Tensor, path: str | Path) -> Path:
    """``model`` as ONNX (torch.onnx's dynamo exporter), input ``images`` (B, C, H, W) with a free batch size,
    output ``logits``."""
    import warnings

    with warnings.catch_warnings():  # the exporter's progress notes are not the user's concern
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), dynamo=True, input_names=["images"], output_names=["logits"],
                          dynamic_shapes=({0: torch.export.Dim("batch")},))
    return Path(path)


def export_classifier(model: nn.Module, out_dir: str | Path, *, card: dict[str, Any],
                      example: torch.Tensor) -> dict[str, Path]:
    """Write ``model_state.pt`` (``torch.load(..., weights_only=True)`` gives the state dict),
    ``model.torchscript.pt`` (traced on ``example``, a (B, C, H, W) float batch; ``torch.jit.load``
    needs no longtail), ``model.onnx`` when the ONNX exporter is installed (any batch size; onnxruntime
    needs no torch) and ``model.json`` (``card`` plus the input shape and what was written). Returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    paths = {"state_dict": out_dir / STATE, "torchscript": out_dir / TORCHSCRIPT, "card": out_dir / CARD}
    torch.save(state, paths["state_dict"])
    with torch.no_grad():
        traced = torch.jit.trace(model, example.cpu())
        if not torch.allclose(traced(example), model(example), atol=1e-5):  # tracing dropped a data-dependent branch
            raise RuntimeError("the traced model's logits differ from the model's: it cannot be exported as TorchScript")
    traced.save(str(paths["torchscript"]))
    notes = {}
    if onnx_available():
        paths["onnx"] = export_onnx(model, example.cpu(), out_dir / ONNX)
    else:
        notes["onnx"] = "not written: the ONNX exporter needs `pip install onnx onnxscript` (longtail[export])"
    card = {**card, "input_shape": list(example.shape[1:]), "files": {k: p.name for k, p in paths.items()}, **notes}
    paths["card"].write_text(json.dumps(card, indent=2))
    return paths
