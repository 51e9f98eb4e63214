"""common/progress.py: the elapsed and remaining time of training runs."""
from common.progress import RunProgress, clock


class FakeClock(object):
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_clock_formats_hours_minutes_seconds():
    assert [clock(s) for s in (0, 59.6, 1234.5, 36000 + 61)] == [
        '0:00:00', '0:01:00', '0:20:34', '10:01:01']


def test_the_rate_leaves_out_the_first_step_and_counts_everything_after_it():
    time = FakeClock()
    progress = RunProgress(100, 200, now=time)   # a run resumed at step 100
    time.now += 30.0                              # the first step compiles the graph
    progress.step_done(101)
    # Before a second step has ended, the first step's time is all there is.
    assert progress.line(101) == ('[progress] step 101 of 200: elapsed 0:00:30, '
                                  'remaining 0:49:30 (30.0000 s/step)')
    for step in range(102, 111):                  # 2 s per step, one 7 s evaluation
        time.now += 2.0 + (7.0 if step == 105 else 0.0)
        progress.step_done(step)
    rate = (9 * 2.0 + 7.0) / 9
    assert progress.line(110) == ('[progress] step 110 of 200: elapsed 0:00:55, '
                                  'remaining %s (%.4f s/step)' % (clock(90 * rate), rate))
    for step in range(111, 201):
        time.now += 2.0
        progress.step_done(step)
    assert progress.line(200).endswith('remaining 0:00:00 (%.4f s/step)'
                                       % ((25.0 + 90 * 2.0) / 99))
