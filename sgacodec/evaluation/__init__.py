"""Rate-distortion evaluation: datasets x methods x settings, resumable, with BD-rate and figures.

    settings = expand_grid(["none", "atanh", "ssl"], [500, 2000], lmbda_scales=[0.5, 1, 2])
    result   = evaluate(model, expand_inputs(["kodak/"]), settings, records_path="kodak.jsonl")
    rows     = aggregate(result.records)           # mean per setting and rate point
    bd_table(curves_from_rows(rows), anchor="none") # BD-rate / BD-PSNR (bjontegaard)

Every figure is measured on real bitstream bytes (bpp = 8 x bytes / pixels) and the decoded 8-bit
image. The parts: grid.py (settings), records.py (typed records with provenance, the JSON-lines
store), runner.py (the loop), classical.py (JPEG/WebP/AVIF at a rate), bd.py (means, curves,
BD figures), plots.py (figures).
"""

from .bd import BDRow, Row, aggregate, bd, bd_matrix, bd_table, curve_name, curves_from_rows, fmt, mean_histories
from .classical import CLASSICAL_CODECS, classical_at_rate, parse_classical
from .grid import Setting, expand_grid, parse_label
from .records import Provenance, Record, RecordWriter, load_records, record_key, rewrite_records
from .runner import EvalResult, Evaluation, evaluate

__all__ = [
    "BDRow", "CLASSICAL_CODECS", "EvalResult", "Evaluation", "Provenance", "Record", "RecordWriter",
    "Row", "Setting", "aggregate", "bd", "bd_matrix", "bd_table", "classical_at_rate", "curve_name",
    "curves_from_rows", "evaluate", "expand_grid", "fmt", "load_records", "mean_histories",
    "parse_classical", "parse_label", "record_key", "rewrite_records",
]


def write_plots(records, out_dir, prefix: str = "") -> list[str]:
    """R-D and loss-per-iteration figures (matplotlib, imported only here)."""
    from .plots import write_plots as write

    return write(records, out_dir, prefix)


__all__.append("write_plots")
