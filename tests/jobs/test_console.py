"""The pieces of a stoppable, quiet run without Ray: signals become ``Interrupted`` once, known
third-party warnings are filtered by message and module only, and console lines reach the log as
text. The real signal to a real run is ``test_interrupt``."""

import logging
import os
import signal
import time
import warnings

import pytest

from taggant.jobs.runlog import LineCopy
from taggant.jobs.runtime import KNOWN_WARNINGS, Interrupted, quiet_warnings, stop_on_signals


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_the_first_signal_interrupts_and_the_next_ones_wait_for_the_clean_up(signum, code):
    before = signal.getsignal(signum)
    cleaned = False
    with pytest.raises(Interrupted) as raised:
        with stop_on_signals():
            try:
                os.kill(os.getpid(), signum)
                time.sleep(5)  # the handler's exception ends the sleep
                pytest.fail("no Interrupted")
            finally:
                os.kill(os.getpid(), signum)  # ignored: the clean-up below still runs
                cleaned = True
    assert cleaned
    assert (raised.value.signal_name, raised.value.exit_code) == (signal.Signals(signum).name, code)
    assert signal.getsignal(signum) is before


def test_known_warnings_are_filtered_and_others_are_not():
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        quiet_warnings()
        for category, message, module in KNOWN_WARNINGS:
            text = message.replace("\\", "")  # the regex's literal text
            where = module.replace("\\", "").rstrip(".") + ".module" if module else "anything"
            warnings.warn_explicit(text + " (and more)", category, "f.py", 1, module=where)
            # The same message from taggant's own code is not a known megatron warning.
            if module:
                warnings.warn_explicit(text, category, "f.py", 1, module="taggant.pipeline.x")
        warnings.warn_explicit("Apex is great", UserWarning, "f.py", 1, module="megatron.core")
    assert sorted(str(w.message) for w in shown) == sorted(
        [m.replace("\\", "") for _, m, module in KNOWN_WARNINGS if module] + ["Apex is great"]
    )


def test_console_lines_reach_the_log_as_plain_text(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="taggant.console")
    with open(tmp_path / "console", "w") as console:
        copy = LineCopy(console)
        copy.write("\x1b[32m✓\x1b[0m ingest done\nhalf a ")
        copy.write("line\n\r\x1b[2K⠋ running train\r\x1b[2K⠙ running train")
        copy.write("\r\x1b[2K✓ train done\n\n")
    assert (tmp_path / "console").read_text().startswith("\x1b[32m✓\x1b[0m ingest done\nhalf a")
    assert [r.getMessage() for r in caplog.records] == [
        "✓ ingest done",
        "half a line",
        "✓ train done",
    ]
