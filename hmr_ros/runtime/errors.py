"""The one exception type of the runtime."""


class EngineError(RuntimeError):
    """An inference backend cannot run: missing or mismatched model files, bad inputs to a
    stage, a backend that is not installed. Messages name the file or input and the fix."""
