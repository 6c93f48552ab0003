"""The model card an export carries (``README.md`` beside the weights): what the network is, what it was trained
on, what it scored and under which protocol, and how to run it.

Why in the export: a generator handed to someone without this repository and its MLflow store must still say
what it is. Numbers are copied from the evaluation records the evaluate stage wrote for *this* generator (the
same MLflow run), each with its protocol; a metric that could not be computed says why, and a card without a
record says so instead of showing nothing.
"""

from __future__ import annotations

from typing import Any

#: arch -> the system it reproduces (README.md's table; the facts followed are in docs/papers.md)
SYSTEMS = {
    "pix2pix": "pix2pix U-Net + PatchGAN with a scene-classification branch — Saccaro, *Automatic Image "
    "Colorization with Adversarial and Classification Losses* (University of Padova, 2023)",
    "chromagan": "ChromaGAN — Vitoria, Raad, Ballester, *ChromaGAN: Adversarial Picture Colorization with "
    "Semantic Class Distribution*, WACV 2020",
    "palgan": "PalGAN — Wang, Xia, Qi, Shao, Qiao, *PalGAN: Image Colorization with Palette Generative "
    "Adversarial Networks*, ECCV 2022",
}

_PROTOCOL_KEYS = ("dataset", "dataset_label", "source", "role", "split", "n_images", "resolution", "resize")


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def evaluation_section(records: list[dict[str, Any]]) -> list[str]:
    """One table per evaluation set: its protocol, then every metric (or why it is missing)."""
    if not records:
        return [
            "No evaluation record was found for this generator (the evaluate stage writes one per evaluation "
            "set; none matched its training run), so this card reports no numbers.",
            "",
        ]
    lines: list[str] = []
    for record in records:
        protocol = record.get("protocol", {})
        lines += [f"### {protocol.get('dataset_label') or protocol.get('dataset', '?')}", ""]
        facts = [f"{k}: {protocol[k]}" for k in _PROTOCOL_KEYS if protocol.get(k) not in (None, "")]
        lines += ["Protocol — " + "; ".join(facts) + ".", ""]
        for key in ("color_space", "averaging"):
            if protocol.get(key):
                lines.append(f"- {key.replace('_', ' ')}: {protocol[key]}")
        lines += ["", "| metric | value |", "|---|---|"]
        for metric, value in record.get("metrics", {}).items():
            shown = _fmt(value) if value is not None else "—"
            lines.append(f"| {metric} | {shown} |")
        for metric, reason in record.get("unavailable", {}).items():
            lines.append(f"| {metric} | not computed: {reason} |")
        if any(k.startswith("fd_") for k in record.get("metrics", {})):
            lines += ["", "`fd_*` is a Fréchet distance on another network's features: a proxy, not FID."]
        lines.append("")
    return lines


def model_card(
    info: dict[str, Any],
    config: dict[str, Any],
    preprocessing: dict[str, Any],
    records: list[dict[str, Any]],
    files: dict[str, str],
    usage: list[str],
    parity: dict[str, Any] | None = None,
) -> str:
    """The Markdown card. ``config``: the ModelConfig as a dict; ``files``: name -> sha256; ``usage``:
    Markdown lines showing how to run this export; ``parity``: the ONNX check's record."""
    meta = info.get("meta", {})
    arch = config.get("arch", "?")
    steps = meta.get("steps")
    batch = config.get("batch_size")
    lines = [
        f"# {info['name']} — a chromapipe colorization generator",
        "",
        "Predicts the a\\*b\\* chroma of a grayscale photo from its L\\* (CIE L\\*a\\*b\\*, D65); the colour photo "
        "is its own L\\* joined with the predicted a\\*b\\*.",
        "",
        "## Model",
        "",
        f"- system: {SYSTEMS.get(arch, f'a custom recipe ({arch})')}",
        f"- architecture (`arch`): `{arch}`, resolution {config.get('resolution')}×{config.get('resolution')}",
        f"- options: `{config.get('options') or {}}`; loss weights: `{config.get('loss') or {}}`",
        "",
        "## Training",
        "",
        f"- dataset: `{config.get('dataset')}` (this project's `datasets.{config.get('dataset')}`)",
        f"- steps: {steps} at a global batch of {batch}"
        + (f" ({int(steps) * int(batch)} images seen)" if steps and batch else ""),
        f"- MLflow run: `{meta['run_id']}` (its parameters hold every setting: seed, schedule, data)"
        if meta.get("run_id")
        else "- MLflow run: not recorded in the generator file",
        "",
        "## Evaluation",
        "",
        "Measured on this generator by the evaluate stage; not the paper's numbers. A generator trained for a "
        "handful of steps (the sample profile) shows that the pipeline works, not what the architecture can do.",
        "",
        *evaluation_section(records),
        "## Input and output",
        "",
        *[f"- {k.replace('_', ' ')}: {v}" for k, v in preprocessing.items()],
        "",
    ]
    if parity:
        lines += ["## ONNX check", ""]
        for name, row in parity["outputs"].items():
            lines.append(
                f"- `{name}`: onnxruntime {parity['onnxruntime']} vs torch at batch {parity['batch']}: max |Δ| "
                f"{row['max_abs_diff']:.3g}, mean {row['mean_abs_diff']:.3g} ({row['unit']}; tolerance "
                f"{row['tolerance']:.3g})"
            )
        lines.append("")
    lines += ["## Use", "", *usage, "", "## Files", "", "| file | sha256 |", "|---|---|"]
    lines += [f"| `{name}` | `{digest}` |" for name, digest in files.items()]
    return "\n".join(lines) + "\n"
