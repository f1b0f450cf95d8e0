"""An NNI custom assessor, written as NNI's docs show ("Customize Assessor"): a median rule.

After ``start_step`` results a trial is Bad when its best result so far is worse than the
median of the finished trials' running averages at the same step. Nothing in it knows
remotetune.
"""

from nni.assessor import Assessor, AssessResult
from nni.utils import OptimizeMode


class MedianNniAssessor(Assessor):
    def __init__(self, optimize_mode="maximize", start_step=3):
        self.high_is_good = OptimizeMode(optimize_mode) is OptimizeMode.Maximize
        self.start_step = start_step
        self.running = {}
        self.finished = []

    def trial_end(self, trial_job_id, success):
        history = self.running.pop(trial_job_id, None)
        if success and history:
            self.finished.append(history)

    def assess_trial(self, trial_job_id, trial_history):
        sign = 1.0 if self.high_is_good else -1.0
        history = [sign * float(v) for v in trial_history]
        self.running[trial_job_id] = history
        step = len(history)
        if step < self.start_step:
            return AssessResult.Good
        averages = sorted(sum(h[:step]) / step for h in self.finished if len(h) >= step)
        if not averages:
            return AssessResult.Good
        median = averages[len(averages) // 2]
        return AssessResult.Bad if max(history) < median else AssessResult.Good
