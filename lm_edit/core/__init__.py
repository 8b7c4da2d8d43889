"""The editing core, shared by every editor: where a model's parts are (:mod:`.anatomy`),
one way to read and patch activations (:mod:`.hooks`), token positions (:mod:`.tokens`),
key statistics (:mod:`.stats`), typed arguments (:mod:`.arguments`), helpers for
editors that train (:mod:`.training`) and what an edit changed and how to undo it
(:mod:`.record`). Imports nothing from lm-eval, nor from the
editors that build on it."""
