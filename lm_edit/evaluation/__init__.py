"""The lm-eval integration: the ``edited-hf`` model (:mod:`.model`), the edit session it
shares with the tasks (:mod:`.session`), and the editing tasks' documents, probes and
metrics. The only part of lm-edit, with the studies, that imports lm-eval."""
