"""The numbers the three papers published, as data, and which of this project's models each row matches.

Why data and not prose: the report puts every published number beside a number this pipeline measured,
and a reader must be able to tell which is which and under what protocol each was taken. Keeping the
published values as records (one value per record, with its paper, table, dataset and protocol text)
lets ``tables.py`` lay them out with pandas without ever mixing a reported and a measured value in one
cell. Transcribed from the papers' tables as ``docs/papers.md`` lists them (#thesis-published-table,
#chromagan-published-tables, #palgan-published-tables; protocols: #protocols-compared);
``tests/test_papers_doc.py`` checks that the two agree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

THESIS = "thesis"  # Padova thesis: pix2pix + classification branch (Saccaro)
CHROMAGAN = "chromagan"  # Vitoria et al., ChromaGAN (WACV 2020)
PALGAN = "palgan"  # Wang et al., PalGAN (ECCV 2022)

PAPER_TITLES: dict[str, str] = {
    THESIS: "Image colorization with adversarial and classification losses (Padova thesis, pix2pix family)",
    CHROMAGAN: "ChromaGAN: adversarial picture colorization with semantic class distribution (Vitoria et al.)",
    PALGAN: "PalGAN: image colorization with palette generative adversarial networks (Wang et al.)",
}

# Table identifiers (paper, table) used by tables.py
THESIS_TABLE = "thesis_test"
CHROMAGAN_PSNR = "chromagan_psnr"
PALGAN_MAIN = "palgan_main"
PALGAN_CA = "palgan_ca_ablation"

PROTOCOLS: dict[str, str] = {
    THESIS_TABLE: (
        "Places205 10% subset, test split (23,797 images), 256×256; PSNR/SSIM/LPIPS(vgg)/FID computed on "
        "Lab values packed as a 3-channel tensor — NOT sRGB, not comparable with RGB numbers"
    ),
    CHROMAGAN_PSNR: (
        "1,000 ILSVRC2012 images, 224×224; average PSNR (authors' code: uint8 RGB); "
        "some rows copied by the authors from an earlier paper's table"
    ),
    PALGAN_MAIN: (
        "validation sets: ImageNet ctest10k (10,000-image subset of ImageNet val), ImageNet val50k, "
        "COCO-Stuff val; PSNR/SSIM/LPIPS/FID as reported in the PalGAN poster (FID on Inception-v3)"
    ),
    PALGAN_CA: "COCO-Stuff validation; PSNR/SSIM/LPIPS/FID; chromatic-attention (CA) ablation of PalGAN",
}

# The PalGAN main table's dataset column groups, in the paper's order
PALGAN_DATASETS: tuple[str, ...] = ("ImageNet ctest10k", "ImageNet val50k", "COCO-Stuff")
METRICS_4: tuple[str, ...] = ("psnr", "ssim", "lpips", "fid")


@dataclass(frozen=True)
class Published:
    """One published number. ``value`` is None where the paper printed N/A (the note says so)."""

    paper: str
    table: str
    method: str
    dataset: str
    metric: str
    value: float | None
    protocol: str
    note: str = ""


def _rows(
    paper: str,
    table: str,
    dataset: str,
    metrics: tuple[str, ...],
    data: dict[str, tuple],
    note: dict[str, str] | None = None,
) -> list[Published]:
    out = []
    for method, values in data.items():
        for metric, value in zip(metrics, values):
            out.append(
                Published(paper, table, method, dataset, metric, value, PROTOCOLS[table], (note or {}).get(method, ""))
            )
    return out


def _thesis() -> list[Published]:
    data = {
        "① GAN + L1": (1.506, 0.893, 26.360, 0.098),
        "② GAN + L1 + Class": (1.217, 0.911, 27.324, 0.076),
        "③ WGAN-GP + L2 + Class (30 ep)": (2.593, 0.934, 27.734, 0.073),
        "③ WGAN-GP + L2 + Class (50 ep)": (2.357, 0.934, 27.666, 0.073),
    }
    notes = {
        "① GAN + L1": "loss GAN + 100·L1; Adam 2e-4 cosine → 2e-6; 30 epochs",
        "② GAN + L1 + Class": "loss GAN + 100·L1 + 0.003·CE; Adam 2e-4 cosine → 2e-6; 30 epochs",
        "③ WGAN-GP + L2 + Class (30 ep)": "loss 0.1·WGAN-GP + L2 + 0.003·CE; constant 2e-5; 30 epochs",
        "③ WGAN-GP + L2 + Class (50 ep)": "same as ③, trained 50 epochs",
    }
    return _rows(THESIS, THESIS_TABLE, "Places205 test", ("fid", "ssim", "psnr", "lpips"), data, notes)


def _chromagan() -> list[Published]:
    data = {
        "ChromaGAN": (24.98,),
        "ChromaGAN w/o Class": (25.04,),
        "ChromaNet": (25.57,),
        "Iizuka et al.": (23.69,),
        "Larsson et al.": (24.93,),
        "Zhang et al.": (22.04,),
        "Isola et al. (pix2pix)": (21.57,),
    }
    return _rows(CHROMAGAN, CHROMAGAN_PSNR, "ILSVRC2012 (1,000 images)", ("psnr",), data)


_PALGAN_MAIN: dict[str, tuple[tuple[float | None, ...], ...]] = {
    # method: (ctest10k, val50k, COCO-Stuff), each (PSNR, SSIM, LPIPS, FID)
    "CIColor": ((22.30, 0.902, 0.221, 12.20), (22.26, 0.902, 0.221, 9.39), (21.84, 0.895, 0.234, 22.32)),
    "UGColor": ((24.26, 0.918, 0.174, 7.49), (24.26, 0.919, 0.173, 4.60), (24.34, 0.924, 0.165, 14.74)),
    "Lei et al.": ((24.52, 0.917, 0.202, 12.60), (24.03, 0.918, 0.189, 6.35), (24.59, 0.922, 0.191, 23.10)),
    "DeOldify": ((23.54, 0.914, 0.187, 5.78), (22.97, 0.911, 0.185, 3.87), (23.98, 0.939, 0.161, 12.75)),
    "ColTran": ((21.81, 0.892, 0.218, 6.37), (22.12, 0.894, 0.216, 3.81), (22.11, 0.898, 0.210, 11.65)),
    "PalGAN ¹": ((24.19, 0.917, 0.161, 4.60), (24.25, 0.917, 0.161, 2.78), (24.56, 0.924, 0.148, 7.70)),
    "PalGAN ²": ((24.66, 0.920, 0.170, 5.24), (24.54, 0.920, 0.168, 3.62), (24.72, 0.944, 0.156, 8.93)),
    "InstColor *": ((23.03, 0.909, 0.191, 7.35), (23.06, 0.910, 0.190, 4.94), (22.35, 0.838, 0.238, 12.24)),
    "GPColor *": ((21.66, 0.871, 0.230, 5.46), (21.81, 0.880, 0.230, 3.62), (None, None, None, None)),
    "PalGAN *": ((27.75, 0.932, 0.110, 4.20), (27.53, 0.913, 0.118, 2.42), (28.28, 0.936, 0.105, 7.21)),
}
_PALGAN_NOTES: dict[str, str] = {
    "PalGAN ¹": "automatic colorization (palette predicted by the palette generator)",
    "PalGAN ²": "PalGAN variant marked ² in the paper (marker not explained in the available sources)",
    "PalGAN *": "marked * in the paper like InstColor/GPColor (marker not explained in the available sources)",
    "GPColor *": "COCO-Stuff: N/A in the paper",
}


def _palgan() -> list[Published]:
    out: list[Published] = []
    for method, per_dataset in _PALGAN_MAIN.items():
        for dataset, values in zip(PALGAN_DATASETS, per_dataset):
            out += _rows(PALGAN, PALGAN_MAIN, dataset, METRICS_4, {method: values}, _PALGAN_NOTES)
    ablation = {
        "no CA": (21.93, 0.902, 0.203, 9.90),
        "local CA only": (24.52, 0.924, 0.146, 9.97),
        "global CA only": (23.32, 0.907, 0.174, 8.34),
        "full CA (global + local)": (24.56, 0.924, 0.148, 7.70),
    }
    out += _rows(PALGAN, PALGAN_CA, "COCO-Stuff", METRICS_4, ablation)
    return out


def published_records() -> list[Published]:
    """Every published number transcribed from the papers (docs/papers.md)."""
    return _thesis() + _chromagan() + _palgan()


def published_frame() -> pd.DataFrame:
    """The published numbers as a long DataFrame (paper, table, method, dataset, metric, value, protocol, note)."""
    return pd.DataFrame([asdict(r) for r in published_records()])


# Model name (params.yaml ``models.<name>``) -> the paper rows it reproduces: {table: method}.
MODEL_ROWS: dict[str, dict[str, str]] = {
    "palgan": {PALGAN_MAIN: "PalGAN ¹", PALGAN_CA: "full CA (global + local)"},
    "palgan_no_ca": {PALGAN_CA: "no CA"},
    "palgan_global_ca": {PALGAN_CA: "global CA only"},
    "palgan_local_ca": {PALGAN_CA: "local CA only"},
    "pix2pix": {THESIS_TABLE: "① GAN + L1", CHROMAGAN_PSNR: "Isola et al. (pix2pix)"},
    "pix2pix_class": {THESIS_TABLE: "② GAN + L1 + Class"},
    "pix2pix_wgan_class": {THESIS_TABLE: "③ WGAN-GP + L2 + Class (30 ep)"},
    "chromagan": {CHROMAGAN_PSNR: "ChromaGAN"},
    "chromagan_no_class": {CHROMAGAN_PSNR: "ChromaGAN w/o Class"},  # the paper's λ_s = 0 (loss kl: 0)
    "chromanet": {CHROMAGAN_PSNR: "ChromaNet"},  # the paper's λ_p = 0 (loss adv: 0)
}

# CA ablation: model -> (global CA, local CA), in the paper's row order
CA_VARIANTS: dict[str, tuple[bool, bool]] = {
    "palgan_no_ca": (False, False),
    "palgan_local_ca": (False, True),
    "palgan_global_ca": (True, False),
    "palgan": (True, True),
}


def paper_row(model: str, table: str) -> str | None:
    """The paper method a model reproduces in ``table``, or None when it has no counterpart there."""
    return MODEL_ROWS.get(model, {}).get(table)


def value(table: str, method: str, metric: str, dataset: str | None = None) -> float | None:
    """One published value (None: not reported). Raises KeyError for a method/metric the table lacks."""
    for r in published_records():
        if r.table == table and r.method == method and r.metric == metric and (dataset is None or r.dataset == dataset):
            return r.value
    raise KeyError(f"{table}: no published {metric} for {method!r}" + (f" on {dataset}" if dataset else ""))


def table_datasets(table: str) -> tuple[str, ...]:
    """The data sets (column groups) a published table reports, in the paper's order."""
    return tuple(dict.fromkeys(r.dataset for r in published_records() if r.table == table))


# Every data set a published table uses: the only values of an evaluation record's ``dataset_label`` that
# may place a measured number beside the papers' (evaluation sets of our own carry no label).
DATASET_LABELS: tuple[str, ...] = tuple(dict.fromkeys(r.dataset for r in published_records()))
