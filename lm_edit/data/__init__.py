"""Edit data in: the :class:`EditRequest` every editor consumes, the sources it is read
from (:mod:`.sources`), one converter per format (:mod:`.formats`) and the loader that
ties them together (:mod:`.loading`). Imports nothing from the editing core or lm-eval."""

from lm_edit.data.loading import load_edit_requests, select_requests
from lm_edit.data.requests import EditRequest, EditRequestError, Probe

__all__ = ["EditRequest", "EditRequestError", "Probe", "load_edit_requests", "select_requests"]
