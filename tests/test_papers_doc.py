"""docs/papers.md, the papers' facts with their sources: every anchor the repository cites exists, and the
published numbers in ``reporting/published.py`` are the ones the document copies from the papers' tables."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

from chromapipe.reporting import published as pub

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "papers.md"
CITING = ("src", "tests", "bench", "pipeline")
SECTION_PREFIXES = ("thesis-", "chromagan-", "palgan-", "protocols-", "batches-", "colorfulness-", "sources")

# the papers' row labels (as printed) -> the method names of reporting/published.py
ROWS = {
    pub.THESIS_TABLE: {
        "GAN + L1": "① GAN + L1",
        "GAN + L1 + Class": "② GAN + L1 + Class",
        "WGAN-GP + L2 + Class (30 epochs)": "③ WGAN-GP + L2 + Class (30 ep)",
        "WGAN-GP + L2 + Class (50 epochs)": "③ WGAN-GP + L2 + Class (50 ep)",
    },
    pub.CHROMAGAN_PSNR: {
        "ChromaGAN": "ChromaGAN",
        "ChromaGAN w/o Class": "ChromaGAN w/o Class",
        "ChromaNet": "ChromaNet",
        "Iizuka et al. [17]": "Iizuka et al.",
        "Larsson et al. [22]": "Larsson et al.",
        "Zhang et al. [39]": "Zhang et al.",
        "Isola et al. [19]": "Isola et al. (pix2pix)",
    },
    pub.PALGAN_MAIN: {
        "CIColor [54]": "CIColor",
        "UGColor [56]": "UGColor",
        "Lei et. al. [26]": "Lei et al.",
        "Deoldify [2]": "DeOldify",
        "ColTrans [23]": "ColTran",
        "Ours ¹": "PalGAN ¹",
        "Ours ²": "PalGAN ²",
        "InstColor* [38]": "InstColor *",
        "GPColor* [49]": "GPColor *",
        "Ours*": "PalGAN *",
    },
    pub.PALGAN_CA: {
        "× ×": "no CA",
        "× ✓": "local CA only",
        "✓ ×": "global CA only",
        "✓ ✓": "full CA (global + local)",
    },
}
# each table's value columns: (metric, dataset or None)
COLUMNS = {
    pub.THESIS_TABLE: [(m, None) for m in ("fid", "ssim", "psnr", "lpips")],
    pub.CHROMAGAN_PSNR: [("psnr", None)],
    pub.PALGAN_MAIN: [(m, d) for d in pub.PALGAN_DATASETS for m in pub.METRICS_4],
    pub.PALGAN_CA: [(m, None) for m in pub.METRICS_4],
}
LABEL_CELLS = {pub.PALGAN_CA: 2}  # the CA ablation's rows are labelled by two cells (G, L)


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = unicodedata.normalize("NFC", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors() -> set[str]:
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", DOC.read_text(encoding="utf-8"), re.M)}


def cited() -> dict[str, set[str]]:
    """anchor -> files citing it: ``docs/papers.md#a`` and, in files that cite the document, bare ``#a``."""
    files = [p for d in CITING for p in (REPO / d).rglob("*") if p.suffix in {".py", ".sh", ".md", ".yaml"}]
    files += list(REPO.glob("*.md")) + list(REPO.glob("*.yaml")) + [DOC]
    out: dict[str, set[str]] = {}
    for path in files:
        text = path.read_text(encoding="utf-8")
        if "papers.md" not in text:
            continue
        for m in re.finditer(r"#([a-z][a-z0-9]*(?:-[a-z0-9]+)*)", text):
            if m.group(1).startswith(SECTION_PREFIXES):
                out.setdefault(m.group(1), set()).add(str(path.relative_to(REPO)))
    return out


def published_tables() -> dict[str, list[list[str]]]:
    """``<!-- table: id -->`` followed by a Markdown table -> its body rows as lists of cells."""
    tables: dict[str, list[list[str]]] = {}
    lines = DOC.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        m = re.fullmatch(r"<!-- table: (\w+) -->", line.strip())
        if not m:
            continue
        rows = []
        for row in lines[i + 3 :]:  # skip the header and the |---| line
            if not row.startswith("|"):
                break
            rows.append([c.strip() for c in row.strip().strip("|").split("|")])
        tables[m.group(1)] = rows
    return tables


def test_every_cited_anchor_exists() -> None:
    have = anchors()
    refs = cited()
    assert refs, "nothing cites docs/papers.md"
    missing = {a: sorted(files) for a, files in refs.items() if a not in have}
    assert not missing, f"anchors cited but not in docs/papers.md: {missing}"
    # each paper's sections are cited from the code that follows them
    assert {"thesis-architecture", "chromagan-architecture", "palgan-architecture"} <= set(refs)


def test_no_citation_needs_files_outside_the_repository() -> None:
    """The repository stands alone: citations point into docs/papers.md, not at a sibling checkout's notes."""
    outside = ("shared" + "/reference", "seeds" + "/")
    hits = []
    for d in CITING:
        for path in (REPO / d).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            hits += [f"{path.relative_to(REPO)}: {s}" for s in outside if s in text]
    for path in REPO.glob("*.md"):
        text = path.read_text(encoding="utf-8")
        hits += [f"{path.name}: {s}" for s in outside if s in text]
    assert not hits


@pytest.mark.parametrize("table", list(ROWS))
def test_published_numbers_match_the_papers_tables(table: str) -> None:
    rows = published_tables()[table]
    label_cells = LABEL_CELLS.get(table, 1)
    assert [" ".join(r[:label_cells]) for r in rows] == list(ROWS[table])  # every row, in the paper's order
    for row in rows:
        method = ROWS[table][" ".join(row[:label_cells])]
        cells = row[label_cells:]
        assert len(cells) == len(COLUMNS[table])
        for cell, (metric, dataset) in zip(cells, COLUMNS[table]):
            expected = None if cell == "N/A" else float(cell)
            assert pub.value(table, method, metric, dataset) == expected, (table, method, metric, dataset)
    # and published.py has no row the document lacks
    assert {r.method for r in pub.published_records() if r.table == table} == set(ROWS[table].values())
