"""``lm-edit report``: tables, curves and a leaderboard from sweep folders."""
