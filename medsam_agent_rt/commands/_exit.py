"""The exit codes of every ``medsam-agent`` command (one table; README "Reliability").

====  ===================  ===============================================================
code  name                 meaning
====  ===================  ===============================================================
0     OK                   done (segment: the episode ended by stop or budget; eval: every
                           sample evaluated or skipped for a documented reason)
1     FAILED               the work itself failed: the policy or its model server (segment:
                           nothing written), or some samples of an evaluation (eval: results
                           written; those rows hold ``skipped = "failed"`` and the error)
2     USAGE                bad arguments or input (unreadable / oversized / degenerate image,
                           GT mismatch, unknown spec, unsafe or unwritable --out, missing
                           shards); nothing written
3     TOOL_ERROR           segment: the segmenter failed during the episode (outputs written;
                           the record says what failed)
4     NO_VALID_ACTION      segment: no answer of the policy was a valid action (outputs written:
                           an empty mask and the record); stderr has a line starting with
                           ``medsam-agent segment: no-valid-action:``
130   INTERRUPTED          Ctrl-C / SIGINT (nothing partial written)
====  ===================  ===============================================================
"""

from __future__ import annotations

OK = 0
FAILED = 1
USAGE = 2
TOOL_ERROR = 3
NO_VALID_ACTION = 4
INTERRUPTED = 130

EPILOG = (
    "exit codes: 0 done, 1 failed (policy / samples), 2 bad input, 3 tool error, "
    "4 no valid action, 130 interrupted"
)
