"""The one exception type of model export and exported-model loading."""


class ExportError(RuntimeError):
    """An export failed, or an exported model directory is incomplete, stale or inconsistent.

    Messages name the file and what is wrong, e.g. a manifest that does not match its graphs.
    """
