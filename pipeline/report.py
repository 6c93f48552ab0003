"""DVC stage `report`: tables and figures from evaluation/ and MLflow -> reports/."""

from _stage import run_stage

from chromapipe.reporting.report import build_report

if __name__ == "__main__":
    run_stage(build_report)
