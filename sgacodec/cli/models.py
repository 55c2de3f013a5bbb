"""``sgacodec models``: the models that can be used, what each gives on Kodak, and how to get it."""

from __future__ import annotations

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON record per model on stdout.")
def models(as_json):
    """List the models: the embedded ones (offline, measured on Kodak) and CompressAI's zoo
    (published Kodak figures; its weights download once into torch.hub's cache, then work
    offline). Figures are without refinement; refinement saves bits on top of each."""
    from .. import json_line, model_catalogue
    from .console import stderr_console

    entries = model_catalogue()
    if as_json:
        for entry in entries:
            click.echo(json_line(entry))
        return
    from rich.table import Table

    table = Table(title="Models (Kodak, no refinement: embedded measured, zoo published by CompressAI)")
    for col in ("model", "quality", "lambda", "bpp", "PSNR dB", "available", "use"):
        table.add_column(col, justify="right" if col in ("quality", "lambda", "bpp", "PSNR dB") else "left")
    for e in entries:
        name = f"{e['kind']} {e['name']}" + (" (default)" if e["default"] else "") \
            + (" (context model: slow)" if e.get("context_model") else "")
        available = "yes" if e["available"] else "download" if e["available"] is False else "?"
        table.add_row(name, str(e["quality"]), f"{e['lmbda']:g}", f"{e['kodak_bpp']:.3f}",
                      f"{e['kodak_psnr']:.2f}", available, e["use"])
    console = stderr_console()
    console.print(table)
