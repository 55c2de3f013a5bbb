"""One-line wording of what loading a model can fail with (torch's and safetensors' messages are
many lines, and torch's suggests unpickling code)."""

from __future__ import annotations

import re

from ..errors import first_sentence


def mismatch_reason(exc: BaseException) -> str:
    """One line for load_state_dict's many-line RuntimeError (size mismatch, missing or
    unexpected keys)."""
    text = str(exc)
    size = re.search(r"size mismatch for ([\w.]+): copying a param with shape torch.Size\((\[[^\]]*\])\) "
                     r"from checkpoint, the shape in current model is torch.Size\((\[[^\]]*\])\)", text)
    if size:
        return f"{size.group(1)} has shape {size.group(2)}, the architecture needs {size.group(3)}"
    for label, what in (("Missing", "missing"), ("Unexpected", "unexpected")):
        keys = re.search(label + r' key\(s\) in state_dict: ((?:"[^"]*"(?:, )?)+)', text)
        if keys:
            names = re.findall(r'"([^"]*)"', keys.group(1))
            more = f" and {len(names) - 3} more" if len(names) > 3 else ""
            return f"{len(names)} {what} weight(s): {', '.join(names[:3])}{more}"
    details = [line.strip() for line in text.splitlines()[1:] if line.strip()]
    return first_sentence(details[0] if details else text) or type(exc).__name__


def load_failure(exc: BaseException) -> str:
    """Why torch.load refused a file, in one line (never PyTorch's advice to turn weights_only off)."""
    text = " ".join(str(exc).split())
    if "Weights only load failed" in text or type(exc).__name__ == "UnpicklingError":
        found = re.search(r"GLOBAL ([\w.]+)", text)
        what = f" ({found.group(1)})" if found else ""
        return f"it holds pickled objects other than tensors{what}; sgacodec loads weights only, never code"
    if "PytorchStreamReader" in text or "zip archive" in text:
        return "damaged or truncated file (not a readable torch zip archive)"
    return f"not a torch or safetensors checkpoint ({type(exc).__name__})"
