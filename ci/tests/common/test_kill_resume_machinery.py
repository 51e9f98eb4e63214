"""ci/kill_resume.py's own checks fail when they should: a process that
ended by itself is not taken as killed at a kill point."""
import sys

import pytest

from ci.kill_resume import KillLog, Training


def test_kill_log_tells_a_killed_process_from_one_that_exited():
    killed = Training([sys.executable, '-c', 'import time; print("ready"); time.sleep(60)'])
    killed.wait_for_line('^ready$')
    killed.kill()
    exited = Training([sys.executable, '-c', 'print("ready")'])
    exited.wait_for_line('^ready$')
    exited.finish()
    exited.kill()               # too late: it has already ended, with status 0

    kills = KillLog()
    kills.add('sleeping', killed)
    kills.assert_all_killed(['sleeping'])
    kills.add('done', exited)
    with pytest.raises(AssertionError, match="not killed at these points: \\[\\('done', 0\\)\\]"):
        kills.assert_all_killed(['sleeping', 'done'])
    with pytest.raises(AssertionError):
        kills.assert_all_killed(['sleeping'])       # a point the scenario did not name
