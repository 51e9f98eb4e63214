"""Elapsed and remaining time of a long job, for its progress lines.

Training scripts print ``RunProgress.line(step)`` after their own log line
(the reference's lines stay as users' scripts grep them):

    [progress] step 120 of 2000: elapsed 0:02:10, remaining 0:33:05 (1.0560 s/step)

The rate is wall-clock time per step since the run's first step ended, so
evaluations and checkpoints count and the first step (graph compilation)
does not; before a second step has ended it is the first step's time.
"""
import time


def clock(seconds):
    """1234.5 -> '0:20:34'."""
    seconds = int(round(seconds))
    return '%d:%02d:%02d' % (seconds // 3600, seconds // 60 % 60, seconds % 60)


class RunProgress(object):
    """Steps ``start_step+1..stop_step`` of one run; call ``step_done(step)``
    after every step and ``line(step)`` where a progress line is wanted."""

    def __init__(self, start_step, stop_step, now=time.time):
        self.start_step, self.stop_step = start_step, stop_step
        self._now = now
        self._started = now()
        self._first = None   # (time, step) at the end of the run's first step

    def step_done(self, step):
        if self._first is None:
            self._first = (self._now(), step)

    def seconds_per_step(self, step, now):
        if self._first is not None and step > self._first[1]:
            return (now - self._first[0]) / (step - self._first[1])
        return (now - self._started) / max(step - self.start_step, 1)

    def line(self, step):
        now = self._now()
        rate = self.seconds_per_step(step, now)
        return ('[progress] step %d of %d: elapsed %s, remaining %s (%.4f s/step)'
                % (step, self.stop_step, clock(now - self._started),
                   clock(rate * (self.stop_step - step)), rate))
