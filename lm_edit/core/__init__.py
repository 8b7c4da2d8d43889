"""The editing core: where a model's parts are (:mod:`.anatomy`), one way to read and
patch activations (:mod:`.hooks`), token positions (:mod:`.tokens`), key statistics
(:mod:`.stats`), what an edit changed and how to undo it (:mod:`.record`) and the stream
that applies batches of edits (:mod:`.stream`). Imports nothing from lm-eval."""
