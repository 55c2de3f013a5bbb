"""Figures of an evaluation (matplotlib, Agg): R-D curves and the true R-D loss per iteration."""

from __future__ import annotations

from pathlib import Path

from .bd import Row, aggregate, curves_from_rows, mean_histories
from .records import Record


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


STYLE = {"none": ("k", "o"), "ste": ("tab:gray", "v"), "uniform": ("tab:brown", "^"),
         "atanh": ("tab:blue", "s"), "linear": ("tab:green", "D"), "cosine": ("tab:purple", "P"),
         "ssl": ("tab:red", "*"), "linear3": ("tab:olive", "d"), "cosine3": ("tab:pink", "p"),
         "ssl3": ("tab:orange", "X"), "JPEG": ("0.55", "1"), "WebP": ("0.4", "2"), "AVIF": ("0.25", "3")}


def _style(name: str):
    base = name.split(": ")[-1].split(" ")[0]
    return STYLE.get(base, (None, "."))


def _family(name: str) -> str:
    """A curve's name without its iteration count ('ssl 500it tau0.5' -> 'ssl tau0.5')."""
    return " ".join(t for t in name.split(" ") if not (t.endswith("it") and t[:-2].isdigit()))


def _iteration_shades(names: list[str]) -> dict[str, float]:
    """Line opacity per curve: within a method, the more iterations, the more opaque (0.35-1)."""
    its = {n: next((int(t[:-2]) for t in n.split(" ") if t.endswith("it") and t[:-2].isdigit()), 0)
           for n in names}
    shades = {}
    for n in names:
        counts = sorted({its[m] for m in names if _family(m) == _family(n)})
        rank = counts.index(its[n])
        shades[n] = 1.0 if len(counts) == 1 else 0.35 + 0.65 * rank / (len(counts) - 1)
    return shades


def plot_rd(rows: list[Row], path, title: str = "Rate-distortion (real bitstream bytes)") -> str:
    """PSNR (and MS-SSIM where measured) against bpp, one line per curve; writes a PNG."""
    plt = _plt()
    metrics_ = ["psnr"] + (["ms_ssim"] if any(r.ms_ssim is not None for r in rows) else [])
    fig, axes = plt.subplots(1, len(metrics_), figsize=(5.2 * len(metrics_), 4.0), squeeze=False)
    for ax, metric in zip(axes[0], metrics_):
        curves = curves_from_rows(rows, metric)
        shade = _iteration_shades(list(curves))
        for name, pts in curves.items():
            color, marker = _style(name)
            dashed = name.split(" ")[0] in ("JPEG", "WebP", "AVIF")
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, color=color,
                    alpha=shade[name], linestyle="--" if dashed else "-", markersize=5,
                    linewidth=1.2, label=name)
        ax.set_xlabel("bpp (real bytes)")
        ax.set_ylabel("PSNR (dB)" if metric == "psnr" else "MS-SSIM")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return str(path)


def plot_loss(records: list[Record], path,
              title: str = "True R-D loss per iteration (mean over images and models, each at its own "
                           "lambda)") -> str | None:
    """The mean true (hard-rounded) R-D loss per iteration for each method: the paper's Figure 2."""
    hists = mean_histories(records)
    if not hists:
        return None
    # a shorter run's trajectory is a prefix of a longer one (the schedule does not depend on the
    # number of iterations): draw the longest run of each method and temperature only
    longest: dict[str, str] = {}
    for name, (steps, _) in hists.items():
        family = _family(name)
        if family not in longest or steps[-1] > hists[longest[family]][0][-1]:
            longest[family] = name
    hists = {n: hists[n] for n in longest.values()}
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for name, (steps, loss) in sorted(hists.items()):
        color, _ = _style(name)
        ax.plot(steps, loss, color=color, linewidth=1.2, label=name)
    # the region of interest is at and below the starting loss (the best iterate is what gets
    # coded): a method whose iterates diverge (STE does) leaves the plot instead of flattening it
    start = max(loss[0] for _, loss in hists.values())
    low = min(min(loss) for _, loss in hists.values())
    if start > low:
        ax.set_ylim(low - 0.05 * (start - low), start + 0.25 * (start - low))
    ax.set_xlabel("iteration")
    ax.set_ylabel("true R-D loss (lambda 255^2 MSE + bpp)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return str(path)


def write_plots(records: list[Record], out_dir, prefix: str = "") -> list[str]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = aggregate(records)
    written = [plot_rd(rows, out_dir / f"{prefix}rd.png")]
    loss = plot_loss(records, out_dir / f"{prefix}loss_per_iteration.png")
    if loss:
        written.append(loss)
    return written
