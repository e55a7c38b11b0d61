"""benchmarks/bench_robustness.py on small sizes: every docs/robustness.md block it owns gets its measured text."""

import importlib.util
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_tiny_run_writes_every_block(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_robustness", ROOT / "benchmarks" / "bench_robustness.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    doc = tmp_path / "robustness.md"
    shutil.copy(bench.DOC, doc)
    texts = bench.main(tiny=True, docs=True, doc=doc)
    written = doc.read_text()
    assert set(texts) == {"robustness-load", "robustness-finite", "robustness-numerics", "robustness-threads"}
    for name, text in texts.items():
        assert f"<!-- {name}:begin -->\n{text}\n<!-- {name}:end -->" in written
        assert text.startswith("Measured by `python benchmarks/bench_robustness.py tiny=True`")
    assert "the 4 checks take" in texts["robustness-finite"]  # one per FER-YOLO-VSS block of the n model
    fast, ref, out, res = (float(v) for v in re.findall(r"(\d\.\de[-+]\d+)", texts["robustness-numerics"]))
    assert fast <= 2 * ref + 1e-6 and max(out, res) <= 1e-2  # the bounds tests/test_numerics.py holds them to
    counts = re.search(r": (\d+) of yolov8n's (\d+) parameter", texts["robustness-threads"]).groups()
    differ, total = (int(v) for v in counts)
    assert 0 <= differ <= total and total > 100
    outside = lambda s: re.sub(r"<!-- (robustness-\w+):begin -->.*?<!-- \1:end -->", "", s, flags=re.S)  # noqa: E731
    assert outside(written) == outside(bench.DOC.read_text())  # nothing else in the file changed
