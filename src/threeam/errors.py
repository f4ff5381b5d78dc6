"""Exceptions raised for bad user input. Each carries a message meant for the user, never a torch trace."""
from __future__ import annotations


class ThreeAMError(Exception):
    """Base class of every error threeam raises on purpose."""


class InputError(ThreeAMError, ValueError):
    """Bad user input: prompt coordinates, object ids, mask sizes, frames, options."""


class VideoError(InputError):
    """A video or frames folder that is missing, empty or corrupt."""


class CheckpointError(ThreeAMError):
    """A checkpoint that is missing, unreadable or does not match the model's configuration."""


class OfflineError(CheckpointError):
    """Weights were asked for by hub id but cannot be downloaded (no network)."""
