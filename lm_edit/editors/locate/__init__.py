"""Locate-then-edit editors: keys, target values, closed-form solvers and layer distribution."""
