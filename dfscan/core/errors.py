"""Errors every layer raises for bad input; the CLI turns them into one line and exit 2."""


class InputError(ValueError):
    """Bad user input (file, manifest, checkpoint, option): shown as one line, exit code 2."""

    exit_code = 2


class CheckpointError(InputError):
    """A weights file that is not a dfscan safetensors checkpoint, or does not match the model."""
