"""The late policy, as nbgrader's late-submission plugin: `c.LatePolicy.*` in nbgrader_config.py.

nbgrader asks a LateSubmissionPlugin for each submitted notebook's penalty in points, given the
notebook's score and how many seconds the submission came after the student's due date (the
lab's, plus any extension), and stores it in SubmittedNotebook.late_submission_penalty, which its
export and formgrader subtract. This plugin answers with one of:

- "none": no penalty (nbgrader's default);
- "zero": nothing is kept of a late notebook's score (nbgrader's own "zero");
- "per_hour" / "per_day": `penalty_percent` of the score for every hour (day) or part of one, at
  most down to `floor_percent` of the score: 3 h 10 min late at 2.5 % per hour costs 10 %.

and, whatever the method, `cutoff_hours` after the due date (0: no cut-off) nothing is kept.
A course chooses another plugin of its own with nbgrader's `c.AssignLatePenalties.plugin_class`.
"""

from __future__ import annotations

import math

from nbgrader.plugins import LateSubmissionPlugin
from traitlets import Enum, Float, TraitError, validate


class LatePolicy(LateSubmissionPlugin):
    """The late policy: none, zero, or a penalty per hour or day down to a floor; zero after a cut-off."""

    penalty_method = Enum(
        ("none", "zero", "per_hour", "per_day"),
        default_value="none",
        help="'none': no penalty; 'zero': a late notebook keeps nothing; 'per_hour' / 'per_day': "
        "penalty_percent of the score for each hour (day) or part of one, down to floor_percent.",
    ).tag(config=True)
    penalty_percent = Float(
        0.0, help="Percent of the score taken for each started hour (per_hour) or day (per_day) late."
    ).tag(config=True)
    floor_percent = Float(
        0.0, help="The least percent of its score a late notebook keeps under per_hour / per_day (before any cut-off)."
    ).tag(config=True)
    cutoff_hours = Float(
        0.0, help="Hours past the student's due date after which nothing is kept, whatever the method; 0: none."
    ).tag(config=True)

    @validate("penalty_percent", "floor_percent")
    def _percent(self, proposal):
        if not 0 <= proposal["value"] <= 100:
            raise TraitError(f"c.LatePolicy.{proposal['trait'].name} is {proposal['value']}: a percent from 0 to 100")
        return proposal["value"]

    @validate("cutoff_hours")
    def _hours(self, proposal):
        if not (proposal["value"] >= 0 and math.isfinite(proposal["value"])):
            raise TraitError(f"c.LatePolicy.cutoff_hours is {proposal['value']}: hours, 0 or more (0: no cut-off)")
        return proposal["value"]

    def percent_taken(self, seconds_late: float) -> float:
        """The percent of its score this policy takes from a notebook `seconds_late` after its due date."""
        if seconds_late <= 0:
            return 0.0
        if self.cutoff_hours and seconds_late > self.cutoff_hours * 3600:
            return 100.0
        if self.penalty_method == "zero":
            return 100.0
        if self.penalty_method in ("per_hour", "per_day"):
            unit = 3600 if self.penalty_method == "per_hour" else 86400
            started = math.ceil(seconds_late / unit)  # every hour (day) or part of one
            return min(started * self.penalty_percent, 100 - self.floor_percent)
        return 0.0

    def late_submission_penalty(self, student_id: str, score: float, total_seconds_late: float) -> float | None:
        """nbgrader's interface: the penalty in points on this notebook's `score` (None: no penalty)."""
        percent = self.percent_taken(total_seconds_late)
        # Multiplied before dividing, so that 10 % of 15 is 1.5 and not 1.5000000000000002.
        return round(score * percent / 100, 6) if percent else None
