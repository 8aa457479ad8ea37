"""``reslab bench``: our training and inference against torchvision's and timm's, measured side
by side in one process (docs/PERFORMANCE.md, "Speed").

    from reslab.bench import make_settings, run_suite, format_report
    report = run_suite(make_settings(torch.device("cpu"), quick=True), ["resnet20"])
    print(format_report(report))
"""

from reslab.bench.cases import SUITE, make_settings
from reslab.bench.suite import Report, Row, format_report, run_suite

__all__ = ["SUITE", "Report", "Row", "format_report", "make_settings", "run_suite"]
