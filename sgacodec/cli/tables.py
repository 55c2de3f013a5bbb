"""The tables ``sgacodec refine`` prints (rich): per image, per setting, BD-rate and BD-PSNR."""

from __future__ import annotations

from pathlib import Path


def print_tables(console, records, bd_method: str = "akima") -> None:
    """Per-image rows (small runs), per-setting means, and BD-rate / BD-PSNR tables."""
    from rich.console import Console
    from rich.table import Table

    from ..evaluation import aggregate, bd_matrix, bd_table, curves_from_rows
    from ..evaluation import fmt as f

    if not records:
        return
    if not console.is_terminal:  # logs and pipes: wide enough not to wrap the tables
        console = Console(stderr=True, width=max(console.width, 150))
    learned = [r for r in records if not r.classical]
    if 0 < len(learned) <= 24:
        table = Table(title="sgacodec refine: base (encoder latents) vs refined, real bitstream bytes")
        for col in ("image", "setting", "bpp", "PSNR dB", "MS-SSIM", "R-D loss", "base bpp", "base PSNR",
                    "base loss", "time s"):
            table.add_column(col, justify="left" if col in ("image", "setting") else "right")
        for r in learned:
            table.add_row(Path(r.image).name, r.tag, f(r.bpp, ".4f"), f(r.psnr, ".2f"), f(r.ms_ssim, ".4f"),
                          f(r.loss, ".4f"), f(r.base_bpp, ".4f"), f(r.base_psnr, ".2f"),
                          f(r.base_loss, ".4f"), f(r.seconds, ".1f"))
        console.print(table)
    rows = sorted(aggregate(records), key=lambda r: (r.curve, r.bpp or 0))
    table = Table(title="Means over images per setting (bpp from real bitstream bytes)")
    for col in ("curve", "rate point", "n", "bpp", "PSNR dB", "MS-SSIM", "R-D loss", "base loss", "time s"):
        table.add_column(col, justify="left" if col in ("curve", "rate point") else "right")
    for r in rows:
        rate = r.point if r.lmbda is None else f"{r.point} (lambda {r.lmbda:.4g})"
        table.add_row(r.curve, rate, str(r.n), f(r.bpp, ".4f"), f(r.psnr, ".2f"), f(r.ms_ssim, ".4f"),
                      f(r.loss, ".4f"), f(r.base_loss, ".4f"), f(r.seconds, ".1f"))
    console.print(table)
    curves = {k: v for k, v in curves_from_rows(rows).items() if len(v) >= 2}
    if len(curves) < 2:
        return
    try:
        import bjontegaard  # noqa: F401 - an optional dependency (sgacodec[eval])
    except ImportError:
        console.print("BD-rate tables need the bjontegaard package: pip install 'sgacodec[eval]'")
        return
    anchor = next((k for k in curves if k.split(": ")[-1] == "none"), None)
    if anchor:
        table = Table(title=f"BD-rate and BD-PSNR against {anchor} (bjontegaard, {bd_method}; "
                            "negative BD-rate = fewer bits)")
        for col in ("curve", "BD-rate %", "BD-PSNR dB", "points", "overlap"):
            table.add_column(col, justify="left" if col == "curve" else "right")
        for b in bd_table(curves, anchor, method=bd_method):
            table.add_row(b.test, f(b.bd_rate, "+.2f"), f(b.bd_psnr, "+.3f"),
                          f"{b.points[0]}/{b.points[1]}", f(b.overlap, ".0%"))
        console.print(table)
    names = [k for k in curves if k != anchor]
    if len(names) >= 2:
        matrix = bd_matrix(curves, names, method=bd_method)
        table = Table(title="Pairwise BD-rate % (row against column)")
        table.add_column("row vs column")
        for n in names:
            table.add_column(n, justify="right")
        for t in names:
            table.add_row(t, *("" if t == a else f(matrix[(t, a)], "+.2f") for a in names))
        console.print(table)
