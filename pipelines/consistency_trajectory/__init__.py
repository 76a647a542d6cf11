"""Consistency trajectory models with Euler, variance or analytic (Analytic-Precond) preconditioning."""
