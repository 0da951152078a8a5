"""One trial, one way: suggest -> render -> check -> launch -> replay -> score -> record.

trial (the pipeline), measure (repeats), early_stop (a replay stop condition), bound and metrics
(scoring), constraints (feasibility), stats (spread and comparisons of repeated measurements).
"""
