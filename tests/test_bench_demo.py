"""benchmarks/bench_demo.py: the spread table from known runs, and a tiny run end to end."""

import doctest
import importlib.util
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_demo", ROOT / "benchmarks" / "bench_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_spread_table_from_known_runs(bench):
    assert doctest.testmod(bench).failed == 0
    runs = [{"seed": 0, "minutes": 8.0, "map50": 0.70, "map": 0.60}, {"seed": 1, "minutes": 9.0, "map50": 0.72,
            "map": 0.61}, {"seed": 2, "minutes": 10.0, "map50": 0.74, "map": 0.65}]
    text = bench.markdown(runs, "fer-yolo-mamba-n.yaml", tiny=False)
    assert "`python benchmarks/bench_demo.py seeds=0,1,2`" in text and "with its defaults" in text
    assert "| minutes | 9.0 ± 1.0 | 8.0 | 10.0 | 8.0, 9.0, 10.0 |" in text
    assert "| mAP50 | 0.720 ± 0.020 | 0.700 | 0.740 | 0.700, 0.720, 0.740 |" in text
    assert "| mAP50-95 | 0.620 ± 0.026 | 0.600 | 0.650 | 0.600, 0.610, 0.650 |" in text
    assert "every seed: MISSED" in text  # seed 2 took 10 minutes, not under
    assert "every seed: met" in bench.markdown(runs[:2], "fer-yolo-mamba-n.yaml", tiny=False)


def test_tiny_run_writes_the_readme_block(bench, tmp_path, monkeypatch):
    readme = tmp_path / "README.md"
    shutil.copy(ROOT / "README.md", readme)
    write = bench.write_readme_section
    monkeypatch.setattr(bench, "write_readme_section", lambda text, begin, end: write(text, begin, end, readme))
    runs = bench.main(seeds="1", tiny=True, renders=1, project=str(tmp_path / "runs"), readme=True)
    assert [r["seed"] for r in runs] == [1] and runs[0]["minutes"] > 0 and 0 <= runs[0]["map"] <= runs[0]["map50"]
    assert (tmp_path / "runs" / "seed1" / "synth-8-4-64-1" / "data.yaml").is_file()  # the seed reached the demo
    block = re.search(f"{bench.BEGIN}\n(.*)\n{bench.END}", readme.read_text(), re.S).group(1)
    assert "seeds=1 tiny=True" in block and "on tiny settings" in block
    per_seed = ", ".join(f"{r['map50']:.3f}" for r in runs)
    assert f" | {per_seed} |" in block
    assert readme.read_text().replace(block, "") == (ROOT / "README.md").read_text().replace(
        re.search(f"{bench.BEGIN}\n(.*)\n{bench.END}", (ROOT / "README.md").read_text(), re.S).group(1), "")
