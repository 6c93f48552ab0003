"""Open choices as data: params' ``ours`` notes are validated, gathered per paper table with the run-time choices
a trained model recorded, and listed in the report's Protocols section; Table 2 states every row's generator
mode; the all-measured table marks a protocol a record was not scored under with “—”, not a footnote."""

from __future__ import annotations

import copy

import pytest

from chromapipe.config import ConfigError, load_params, parse_params
from chromapipe.metrics.record import MetricsRecord
from chromapipe.reporting import published as pub
from chromapipe.reporting.choices import choices_by_table, open_choices
from chromapipe.reporting.evalsets import EvalIndex
from chromapipe.reporting.render import ReportData, render_html, render_markdown
from chromapipe.reporting.tables import NOT_EVALUATED, all_measured_table, thesis_table
from tests.conftest import REPO

PLACES = {"dataset": "places205_10pct", "dataset_label": "Places205 test", "n_images": 16}
VAL1K = {"dataset": "ilsvrc2012_val1k", "dataset_label": "ILSVRC2012 (1,000 images)", "n_images": 8}
TEACHER = "KL teacher: EfficientNet-Lite0 instead of the paper's VGG16 (weights not here)"


def _records() -> list[MetricsRecord]:
    lab = {"lab_psnr": 25.0, "lab_ssim": 0.9, "lab_lpips_vgg": 0.1, "lab_fid": None}
    train = {k + "_trainmode": (v - 1 if v else v) for k, v in lab.items()}
    return [
        MetricsRecord("pix2pix", "pix2pix", protocol=PLACES, metrics={"psnr": 22.0, **lab, **train}),
        MetricsRecord("pix2pix_class", "pix2pix", protocol=PLACES, metrics={"psnr": 22.5, **lab}),
        MetricsRecord("gray", "gray", kind="baseline", protocol=PLACES, metrics={"psnr": 21.0, **lab}),
        MetricsRecord("chromagan", "chromagan", protocol=VAL1K, metrics={"psnr": 23.0}, ours=[TEACHER]),
        MetricsRecord("chromanet", "chromagan", protocol=VAL1K, metrics={"psnr": 23.5}),
    ]


def test_notes_must_name_a_setting() -> None:
    raw = {"datasets": {"d": {}}, "models": {"m": {"arch": "pix2pix", "dataset": "d", "steps": 1}}}
    for mutate, message in (
        (lambda r: r["models"]["m"].update(ours={"batchsize": "x"}), "models.m.ours.batchsize: not a setting"),
        (lambda r: r["models"]["m"].update(ours={"options.teacher": " "}), "models.m.ours.options.teacher: say why"),
        (lambda r: r.update(train={"ours": {"workers": "x"}}), "train.ours.workers: not a setting"),
    ):
        bad = copy.deepcopy(raw)
        mutate(bad)
        with pytest.raises(ConfigError, match=message):
            parse_params(bad)
    ok = copy.deepcopy(raw)
    ok["models"]["m"]["ours"] = {"options.teacher": "why", "batch_size": "why"}
    assert parse_params(ok).model("m").ours == {"options.teacher": "why", "batch_size": "why"}


def test_each_table_lists_the_choices_its_numbers_rest_on() -> None:
    p = load_params(REPO / "params-paper.yaml")
    index = EvalIndex(_records())
    by_title = {title: [c.text() for c in cs] for title, cs in choices_by_table(p, index)}
    assert list(by_title) == [
        "Table 1 — PalGAN main table",
        "Table 2 — thesis",
        "Table 3 — ChromaGAN PSNR",
        "PalGAN CA ablation",
    ]
    thesis, chroma, palgan = (
        by_title["Table 2 — thesis"],
        by_title["Table 3 — ChromaGAN PSNR"],
        by_title["Table 1 — PalGAN main table"],
    )
    assert any(t.startswith("datasets.places205_10pct.splits = ") and "split_file" in t for t in thesis)
    assert any(t.startswith("models.pix2pix_wgan_class.n_critic = 5: ") for t in thesis)
    assert not any("palgan" in t for t in thesis)  # another paper's models are not behind this table
    assert any(t.startswith("datasets.ilsvrc2012_val1k.file_list = ") for t in chroma)
    assert f"chromagan (trained model): {TEACHER}" in chroma  # the run-time choice, from the record
    grouped = [t for t in palgan if ".resize = center_crop" in t and "poster" in t]  # one line for three sets
    assert grouped == [
        "datasets.imagenet_ctest10k.resize, datasets.imagenet_val50k.resize, datasets.cocostuff_val.resize = "
        "center_crop: shorter side to 256, centre crop (the PalGAN poster does not say how a photo becomes 256x256)"
    ]
    assert all(any(t.startswith("train.num_workers = 2: ") for t in lines) for lines in by_title.values())
    assert open_choices(p, index, pub.PALGAN_CA) and not open_choices(
        load_params(REPO / "params.yaml"), index, "no such table"
    )


def test_report_lists_open_choices_and_generator_modes() -> None:
    p = load_params(REPO / "params-paper.yaml")
    index = EvalIndex(_records())
    table = thesis_table(index, {})
    rows = table.frame
    modes = dict(zip(rows[("", "configuration")] + " / " + rows[("", "source")], rows[("", "generator mode")]))
    assert modes["① GAN + L1 / reported (thesis)"] == "train (the thesis' validation loop)"
    pix = rows[rows[("", "configuration")] == "① pix2pix"]
    assert list(pix[("", "generator mode")]) == ["eval", "train, as the thesis"]
    lab, srgb = "thesis protocol: L*a*b* packed as 3 channels", "this run's protocol: sRGB uint8"
    assert list(pix[(lab, "PSNR↑")]) == ["25.000", "24.000"]  # eval-mode, then train-mode numbers
    assert list(pix[(srgb, "PSNR↑")]) == ["22.00", NOT_EVALUATED]  # sRGB is eval mode only
    cls = rows[rows[("", "configuration")] == "② pix2pix_class"]
    assert list(cls[("", "generator mode")]) == ["eval"]  # no train-mode numbers: no train row
    assert "generator in train mode" in table.caption

    measured = all_measured_table(index, {})
    chroma = measured.frame[measured.frame[("", "model")] == "chromagan"].iloc[0]
    assert chroma[("metrics", "PSNR↑ (Lab-packed)")] == NOT_EVALUATED  # not under that protocol: no footnote
    assert chroma[("metrics", "PSNR↑ (Lab-packed, G in train mode)")] == NOT_EVALUATED
    assert not any("lab_psnr" in note for note in measured.footnotes)

    choices = [(title, [c.text() for c in cs]) for title, cs in choices_by_table(p, index)]
    data = ReportData([table], [], {}, [], {}, [], open_choices=choices)
    md, page = render_markdown(data), render_html(data)
    assert "### Open choices per table" in md and f"- chromagan (trained model): {TEACHER}" in md
    assert "Open choices per table" in page and "models.pix2pix_wgan_class.n_critic = 5" in page
