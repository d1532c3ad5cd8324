"""The top-level README's Python example, run as written (only the bus name
is this test's own) against a producer started with the README's own
``framebus produce`` command line: it must get past its second frame, which
it used to fail with ``PinBudgetExceeded`` (the previous ``img`` still pins
its slot while the loop takes the next frame)."""

import re
import signal
import sys

from conftest import FRAMEBUS_BIN, PYTHON_DIR

README = PYTHON_DIR.parent / "README.md"


def readme_text() -> str:
    return README.read_text(encoding="utf-8")


def readme_python_block() -> str:
    """The first ```python block of the README's "Python consumers" section."""
    text = readme_text()
    section = text[text.index("### Python consumers") :]
    m = re.search(r"```python\n(.*?)```", section, re.S)
    assert m, "no python block in the README's Python section"
    return m.group(1)


def readme_producer_args() -> list:
    """The arguments of the README's first ``framebus produce --bus cam0 ...``
    line (the one its "Use" section starts the bus with), comment dropped."""
    m = re.search(r"^framebus produce (--bus cam0\b[^#\n]*)", readme_text(), re.M)
    assert m, "no `framebus produce --bus cam0` line in the README"
    return m.group(1).split()


def test_the_readme_python_loop_runs_as_written(bus, tmp_path):
    block = readme_python_block()
    assert '"cam0"' in block and "for frame in bus:" in block and "img = frame.array" in block, block
    args = [bus.name if a == "cam0" else a for a in readme_producer_args()]
    assert args[:2] == ["--bus", bus.name], args
    producer = bus.spawn([FRAMEBUS_BIN, "produce", *args], "readme-producer")
    producer.wait_line(lambda l: l == f"ready bus={bus.name}", 20, "the producer's ready line")

    script = tmp_path / "readme_example.py"
    script.write_text(block.replace('"cam0"', repr(bus.name)), encoding="utf-8")
    # -u: the example's prints reach the pipe line by line.
    example = bus.spawn([sys.executable, "-u", script], "readme-example")
    seqs = []
    for _ in range(5):
        line = example.wait_line(lambda l: True, 30, "a line per frame from the README example")
        seq, timestamp_ns, mean = line.split()
        seqs.append(int(seq))
        assert int(timestamp_ns) > 0 and float(mean) >= 0.0, line
    assert seqs == sorted(seqs) and len(set(seqs)) == 5, seqs

    # The loop runs until Ctrl-C, as the README says.
    example.popen.send_signal(signal.SIGINT)
    example.wait_exit(10)
    err = example.stderr_text()
    assert "PinBudgetExceeded" not in err, err
    if "Traceback" in err:
        assert err.rstrip().endswith("KeyboardInterrupt"), err
