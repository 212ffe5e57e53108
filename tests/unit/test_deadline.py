"""A hook's --timeout (SIGALRM, for real) never strikes inside a point of no
return: the replacement finishes, then the deadline strikes."""

from __future__ import annotations

import time

import pytest

from dbpipe.nextcloud.guard import Deadline, HookTimeout
from dbpipe.process import no_return_scope, point_of_no_return


def test_the_deadline_strikes_in_an_ordinary_step():
    started = time.monotonic()
    with pytest.raises(HookTimeout, match=r"timed out after 0.2 s \(--timeout\)"):
        with Deadline(0.2):
            time.sleep(5)
    assert time.monotonic() - started < 2


def test_the_deadline_waits_for_a_replacement_past_its_point_of_no_return(caplog):
    finished = []
    with pytest.raises(HookTimeout):
        with Deadline(0.2):
            with no_return_scope():
                point_of_no_return("while the tables were being swapped")
                time.sleep(1.2)                 # the deadline passes in here
                finished.append(True)
            time.sleep(5)                       # the next step: the deadline strikes now
    assert finished == [True]
    assert "the --timeout of 0.2 s passed while the tables were being swapped; that finishes first" \
        in caplog.text
