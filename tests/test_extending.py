"""The example of docs/extending.md runs and does what it says."""
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


def test_the_extending_example_runs_and_restores_the_blurred_stack(capsys):
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    assert len(code.splitlines()) < 100
    namespace: dict = {"__name__": "extending_example"}
    exec(compile(code, str(DOC), "exec"), namespace)
    report = namespace["report"]
    assert namespace["out"].shape == (2, 32, 32)
    assert report["task"] == "restore" and report["network"]["type"] == "PlainConfig"
    assert report["architecture"] == "plain"
    for s in report["slices"]:  # the motion blur is undone, not just reproduced
        assert s["psnr"] > s["psnr_input"] + 2
