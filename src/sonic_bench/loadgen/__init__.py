"""Grid CPU jobs as Locust users: the paper's 1-400 process experiment (its Fig. 5).

`loadgen/sonic.py` is the thin Locust file; the pieces live here, one per concern:
options (custom arguments), scale (what one event costs), user (the grid job), shape
(the staircase), steps (step boundaries), recorder (records -> run folder).
"""
