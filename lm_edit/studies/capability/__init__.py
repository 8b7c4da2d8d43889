"""The general-capability suite of sequential-editing studies (``edit_capability``).

Task helpers for the benchmarks lm-eval has no stock task for (C3, AX-b), thin variants
of stock tasks where the protocol differs (generative CommonsenseQA, sandboxed MBPP,
MATH with a clear dependency error), the fixed ``_lite`` subsample, and the builder that
turns local copies of every benchmark into the datasets cache lm-eval reads offline.
"""
