"""The one exception type of the kernel front-end."""


class KernelError(ValueError):
    """Bad kernel input (shape, dtype, memory layout, device), or a CUDA failure.

    A ValueError, so callers that validate generically keep working; the message always names
    the op, the argument and what was expected.
    """
